#!/usr/bin/env python3
"""Generate the quickstart data set: examples/quickstart/dlq.jsonl.

A realistic export of 600 dead letters from the RabbitMQ queue `orders.dlq`: the orders consumer failed during a
few incidents between 2026-11-20 and 2026-11-22 (payments timeouts, a database failover, inventory 503s, ...),
next to some genuinely bad messages, malformed and legacy payloads, test traffic and binary bodies.

The output is deterministic (fixed seed): running this again rewrites the same bytes.

Next to the data, this script contains its own model of the example filter chain
route-by-error -> repair-json -> drop-test-traffic (a Python port of filters/*/src, default configs), checks that
every message gets the verdict its category calls for, and that every replayed body passes the fixed consumer's
check (fixed_consumer.check_order). It prints the expected counts.

    python3 examples/quickstart/make_dlq.py [--expect FILE]

--expect FILE also writes the model's decision for every message in the `redrive filter test --expect` format, so
the real filters can be checked against it (see README.md).
"""
import argparse
import base64
import json
import os
import struct
import sys
from collections import Counter
from datetime import datetime, timezone
from random import Random

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fixed_consumer import check_order  # noqa: E402  (the canary gate's check: replayed bodies must pass it)

SEED = 20261120
MAX_REPLAYS = 3  # redrive.toml: max_replays
ORIGIN = {"system": "rabbitmq", "dlq": "orders.dlq", "original_queue": "orders"}

# category -> (how many, expected outcome of `redrive run`; "parked": the loop guard stops the message before the
# filters, as its replay_count >= max_replays; the chain alone would replay it)
CATEGORIES = {
    "transient": (264, "replay"),            # valid v2 order, transient error: replayed as is
    "replayed-before": (6, "parked"),        # same, but redrive replayed it 3 times already
    "permanent": (120, "skip"),              # validation / schema version / 404 / 422 / invalid ...: stays in the DLQ
    "no-failure-context": (12, "skip"),      # no failure info at all: route-by-error's default (skip)
    "malformed-repairable": (72, "replay"),  # trailing commas, single quotes, truncated tail: repaired, replayed
    "malformed-unrepairable": (18, "discard"),  # plain text, HTML error page, XML, JS literal, half-binary text
    "v1-qty": (48, "replay"),                # legacy single-line v1 order: top-level qty renamed to quantity
    "test-traffic": (48, "discard"),         # x-test / x-traffic-type / test- id / "test": true / @example.com
    "binary": (12, "skip"),                  # protobuf body: repair-json skips non-UTF-8 bodies by default
}

# ---------------------------------------------------------------------------------------------------------------
# The model of the three example filters (default configs). Mirrors filters/*/src/lib.rs and repair.rs.
# ---------------------------------------------------------------------------------------------------------------
TRANSIENT = ["timeout", "timed out", "connection refused", "connection reset", "econnrefused", "econnreset",
             "500 internal server error", "502 bad gateway", "503 service unavailable", "504 gateway timeout",
             "throttl", "rate limit", "too many requests", "429", "temporarily unavailable", "deadlock"]
PERMANENT = ["validation", "invalid", "schema version", "unknown schema", "unprocessable", "400 bad request", "422",
             "not found", "404", "constraint violation"]


def classify(failure):
    """route-by-error: ('permanent'|'transient', pattern) or ('unclassified'|'no-context', None)."""
    texts = [failure.get(k) for k in ("error_text", "error_class", "reason")]
    if all(t is None or not t.strip() for t in texts):
        return "no-context", None
    hay = "\n".join(t.lower() for t in texts if t is not None)
    for kind, patterns in (("permanent", PERMANENT), ("transient", TRANSIENT)):
        for p in patterns:
            if p in hay:
                return kind, p
    return "unclassified", None


def route_by_error(msg, body):
    kind, p = classify(msg.get("failure") or {})
    if kind == "permanent":
        return "skip", f'permanent error: matched "{p}"', None
    if kind == "transient":
        return "replay", f'transient error: matched "{p}"', None
    return "skip", "no failure context" if kind == "no-context" else "unclassified error", None


WS, PUNCT = " \t\n\r", "{}[],:"


def lex(text):
    """repair.rs lex(): tokens (kind, start, end, terminated); kind is 'str"', "str'", a punct char or 'other'."""
    tokens, i, n = [], 0, len(text)
    while i < n:
        c, start = text[i], i
        if c in WS:
            i += 1
            continue
        if c in "\"'":
            i, terminated = i + 1, False
            while i < n:
                if text[i] == "\\":
                    i += 2
                elif text[i] == c:
                    i, terminated = i + 1, True
                    break
                else:
                    i += 1
            tokens.append(("str" + c, start, min(i, n), terminated))
        elif c in PUNCT:
            tokens.append((c, start, i + 1, True))
            i += 1
        else:
            while i < n and text[i] not in WS and text[i] not in PUNCT and text[i] not in "\"'":
                i += 1
            tokens.append(("other", start, i, True))
    return tokens


def apply_edits(text, edits):
    out, at = [], 0
    for start, end, replacement in edits:
        out += [text[at:start], replacement]
        at = end
    return "".join(out) + text[at:]


def remove_trailing_commas(text):
    t = lex(text)
    edits = [(a[1], a[2], "") for a, b in zip(t, t[1:]) if a[0] == "," and b[0] in "}]"]
    return apply_edits(text, edits) if edits else None


def single_to_double(raw, terminated):
    inner, out, i = raw[1:len(raw) - 1 if terminated else len(raw)], ['"'], 0
    while i < len(inner):
        c = inner[i]
        if c == "\\":
            nxt = inner[i + 1] if i + 1 < len(inner) else None
            out.append("\\" if nxt is None else "'" if nxt == "'" else "\\" + nxt)
            i += 2
            continue
        out.append('\\"' if c == '"' else c)
        i += 1
    return "".join(out) + ('"' if terminated else "")


def convert_single_quotes(text):
    edits = [(s, e, single_to_double(text[s:e], term)) for k, s, e, term in lex(text) if k == "str'"]
    return apply_edits(text, edits) if edits else None


def close_string(raw):
    body = raw
    backslashes = len(body) - len(body.rstrip("\\"))
    if backslashes % 2 == 1:
        body = body[:-1]
    elif (pos := body.rfind("\\u")) >= 0:
        escaped = len(body[:pos]) - len(body[:pos].rstrip("\\"))
        hexpart = body[pos + 2:]
        if escaped % 2 == 0 and len(hexpart) < 4 and all(h in "0123456789abcdefABCDEF" for h in hexpart):
            body = body[:pos]
    return body + '"'


def close_unterminated_tail(text):
    tokens, stack = lex(text), []
    for kind, *_ in tokens:
        if kind in ("{", "["):
            stack.append(kind)
        elif kind in ("}", "]"):
            if not stack or stack.pop() != {"}": "{", "]": "["}[kind]:
                return None
    open_string = bool(tokens) and tokens[-1][0].startswith("str") and not tokens[-1][3]
    if not stack and not open_string:
        return None
    while tokens:
        kind = tokens[-1][0]
        if kind == ",":
            tokens.pop()
        elif kind == ":":
            tokens.pop()
            if tokens and tokens[-1][0].startswith("str"):
                tokens.pop()
        elif kind.startswith("str") and stack and stack[-1] == "{" and len(tokens) >= 2 and tokens[-2][0] in ("{", ","):
            tokens.pop()  # a key with no colon and no value
        else:
            break
    out = ""
    if tokens:
        kind, s, e, terminated = tokens[-1]
        raw = text[s:e]
        out = text[:s]
        if kind.startswith("str") and not terminated:
            out += close_string(single_to_double(raw, False) if kind == "str'" else raw)
        else:
            out += raw
    return out + "".join("}" if o == "{" else "]" for o in reversed(stack))


def is_valid_json(text):
    try:
        json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        return True
    except ValueError:
        return False


def compact(text):
    return "".join(text[s:e] for _, s, e, _ in lex(text))


def rename_top_level_keys(text, renames=(("qty", "quantity"),)):
    tokens = lex(text)
    if not tokens or tokens[0][0] != "{":
        return None
    keys, depth = [], 0
    for index, (kind, s, e, _) in enumerate(tokens):
        if kind in ("{", "["):
            depth += 1
        elif kind in ("}", "]"):
            depth = max(depth - 1, 0)
        elif kind.startswith("str") and depth == 1 and index + 1 < len(tokens) and tokens[index + 1][0] == ":":
            try:
                keys.append([index, json.loads(text[s:e])])
            except ValueError:
                pass
    replaced, applied = {}, []
    for old, new in renames:
        if any(k == new for _, k in keys):
            continue
        hit = False
        for entry in keys:
            if entry[1] == old:
                replaced.setdefault(entry[0], json.dumps(new, ensure_ascii=False))
                entry[1], hit = new, True
        if hit:
            applied.append((old, new))
    if not applied:
        return None
    for index, key in keys:
        v = tokens[index + 2] if index + 2 < len(tokens) else None
        if key == "schema_version" and v and v[0] == "other" and text[v[1]:v[2]] == "1":
            replaced.setdefault(index + 2, "2")
    out = "".join(replaced.get(i, text[s:e]) for i, (_, s, e, _) in enumerate(tokens))
    return out, "renamed " + ", ".join(f"{o} -> {n}" for o, n in applied)


def repair_json(msg, body):
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "skip", "binary body (not UTF-8 text)", None
    if not text.strip():
        return "discard", "empty body", None
    if is_valid_json(text):
        renamed = rename_top_level_keys(text)
        return ("replay", renamed[1], renamed[0].encode()) if renamed else ("replay", "valid JSON", None)
    current, applied = text, []
    for name, fix in (("trailing commas", remove_trailing_commas), ("single quotes", convert_single_quotes),
                      ("unterminated tail", close_unterminated_tail)):
        fixed = fix(current)
        if fixed is not None:
            current = fixed
            applied.append(name)
    if not applied or not is_valid_json(current):
        return "discard", None, None  # "unrepairable JSON: <serde_json's error>", which we do not reproduce
    reason, renamed = "repaired: " + ", ".join(applied), rename_top_level_keys(current)
    if renamed:
        return "replay", f"{reason}; {renamed[1]}", renamed[0].encode()
    return "replay", reason, compact(current).encode()


def drop_test_traffic(msg, body):
    attrs = list((msg.get("attributes") or {}).items())
    for wanted in ("x-test", "x-synthetic", "x-test-traffic"):
        for name, value in attrs:
            if name.lower() == wanted and value.strip().lower() in ("true", "1", "yes"):
                return "discard", f"test traffic: attribute {name}={value}", None
    for wanted in ("x-traffic-type", "traffic-type"):
        for name, value in attrs:
            if name.lower() == wanted and value.strip().lower() in ("test", "synthetic", "loadtest"):
                return "discard", f"test traffic: attribute {name}={value}", None
    for prefix in ("test-", "synthetic-"):
        if msg["id"].startswith(prefix):
            return "discard", f"test traffic: id prefix {prefix}", None
    try:
        obj = json.loads(body)
    except ValueError:  # also UnicodeDecodeError
        obj = None
    if isinstance(obj, dict):
        for field in ("test", "is_test", "synthetic"):
            if obj.get(field) is True:
                return "discard", f"test traffic: body field {field}=true", None
        for field in ("email", "customer_email"):
            email = obj.get(field)
            if isinstance(email, str) and "@" in email.strip():
                domain = email.strip().rsplit("@", 1)[1].lower()
                for d in ("example.com", "example.org", "test.invalid"):
                    if domain == d or domain.endswith("." + d):
                        return "discard", f"test traffic: email domain {d}", None
    return "replay", "not test traffic", None


CHAIN = [("route-by-error", route_by_error), ("repair-json", repair_json), ("drop-test-traffic", drop_test_traffic)]


def run_chain(msg):
    """(verdict, reason, decided_by, new body or None) as `redrive filter test` reports it."""
    original = base64.b64decode(msg["body_base64"]) if "body_base64" in msg else msg.get("body", "").encode()
    body = None
    for name, decide in CHAIN:
        verdict, reason, new_body = decide(msg, body if body is not None else original)
        if new_body is not None:
            body = new_body
        if verdict != "replay":
            break
    return verdict, reason, name, body, body if body is not None else original


# ---------------------------------------------------------------------------------------------------------------
# The data: customers, catalogue, incidents and error texts.
# ---------------------------------------------------------------------------------------------------------------
CUSTOMERS = [  # name, email, country, city, postcode, street
    ("Jürgen Müller", "juergen.mueller@gmx.de", "DE", "Köln", "50667", "Hohe Str. 12"),
    ("Anna Schmidt", "anna.schmidt@web.de", "DE", "Berlin", "10115", "Chausseestr. 5"),
    ("Mia Hofmann", "mia.hofmann@t-online.de", "DE", "Hamburg", "20095", "Mönckebergstr. 7"),
    ("Ayşe Yılmaz", "ayse.yilmaz@gmail.com", "DE", "München", "80331", "Sendlinger Str. 9"),
    ("山田 太郎", "taro.yamada@icloud.com", "DE", "Düsseldorf", "40210", "Immermannstr. 25"),
    ("Дмитрий Иванов", "dmitri.ivanov@gmail.com", "DE", "Leipzig", "04109", "Grimmaische Str. 2"),
    ("Wei Chen", "wei.chen@outlook.com", "DE", "Frankfurt am Main", "60311", "Zeil 88"),
    ("Zoë Laurent", "zoe.laurent@orange.fr", "FR", "Lyon", "69002", "12 rue de la République"),
    ("François Dupont", "f.dupont@free.fr", "FR", "Paris", "75011", "8 boulevard Voltaire"),
    ("Chloé Martin", "chloe.martin@laposte.net", "FR", "Bordeaux", "33000", "3 cours de l'Intendance"),
    ("Inés García", "ines.garcia@gmail.com", "ES", "Sevilla", "41004", "Calle Sierpes 20"),
    ("José Álvarez", "jose.alvarez@telefonica.net", "ES", "Madrid", "28013", "Calle Mayor 41"),
    ("Matteo Rossi", "matteo.rossi@libero.it", "IT", "Milano", "20121", "Via Dante 4"),
    ("Giulia Bianchi", "giulia.bianchi@gmail.com", "IT", "Torino", "10123", "Via Roma 101"),
    ("Sanne de Vries", "sanne.devries@ziggo.nl", "NL", "Utrecht", "3511 AB", "Oudegracht 120"),
    ("Daan Bakker", "daan.bakker@kpnmail.nl", "NL", "Rotterdam", "3011 AD", "Hoogstraat 15"),
    ("Lukas Gruber", "lukas.gruber@aon.at", "AT", "Wien", "1010", "Graben 19"),
    ("Siobhán O'Brien", "siobhan.obrien@eircom.net", "IE", "Dublin", "D02 X285", "14 Dame Street"),
    ("Sven Meier", "sven.meier@bluewin.ch", "CH", "Zürich", "8001", "Bahnhofstrasse 21"),
    ("Noémie Keller", "noemie.keller@gmx.ch", "CH", "Genève", "1204", "Rue du Rhône 48"),
    ("Emma Williams", "emma.williams@outlook.com", "GB", "Manchester", "M1 1AE", "22 Market Street"),
    ("Oliver Brown", "oliver.brown@btinternet.com", "GB", "Bristol", "BS1 4DJ", "7 Corn Street"),
    ("Priya Patel", "priya.patel@gmail.com", "GB", "Leicester", "LE1 5WW", "31 Granby Street"),
    ("Björn Åkesson", "bjorn.akesson@telia.com", "SE", "Göteborg", "411 19", "Vasagatan 7"),
    ("Søren Jensen", "soren.jensen@mail.dk", "DK", "Aarhus", "8000", "Søndergade 30"),
    ("Łukasz Wiśniewski", "lukasz.wisniewski@wp.pl", "PL", "Kraków", "31-042", "ul. Floriańska 3"),
    ("Katarzyna Nowak", "k.nowak@onet.pl", "PL", "Gdańsk", "80-831", "ul. Długa 45"),
]
CURRENCY = {"DE": "EUR", "FR": "EUR", "ES": "EUR", "IT": "EUR", "NL": "EUR", "AT": "EUR", "IE": "EUR",
            "CH": "CHF", "GB": "GBP", "SE": "SEK", "DK": "DKK", "PL": "PLN"}
RATE = {"EUR": 1.0, "CHF": 0.95, "GBP": 0.86, "SEK": 11.5, "DKK": 7.46, "PLN": 4.3}
CATALOGUE = [("TSH-BLK-M", 19.90), ("TSH-WHT-L", 19.90), ("HOOD-GRY-XL", 49.00), ("MUG-STN-350", 12.50),
             ("BK-9783161484100", 24.99), ("HDP-BT-220", 89.00), ("SCK-WOOL-42", 9.95), ("LMP-DESK-LED", 39.90),
             ("BTL-STEEL-750", 22.00), ("CBL-USBC-2M", 11.99), ("NB-A5-DOT", 7.50), ("PEN-GEL-BLU-10", 6.49),
             ("BAG-TOTE-NAT", 14.90), ("CDL-SOY-LAV", 17.50), ("PLN-MONST-S", 29.00), ("TEA-SENCHA-100", 8.90),
             ("CHG-65W-GAN", 34.99), ("SHO-RUN-43", 119.00), ("CAP-NVY-OS", 21.00), ("PUZ-1000-MAP", 18.99)]
NOTES = ["Bitte beim Nachbarn abgeben, falls niemand öffnet.", "Geschenkverpackung bitte 🎁", "Livrer après 18h.",
         "Leave at the back door, thanks!", "Por favor, llamar antes de entregar.", "Ring twice – the bell is odd.",
         "Prosze zostawic w paczkomacie.", "Ohne Rechnung im Paket, danke."]
SHIPPING = {"standard": 4.90, "express": 9.90, "pickup": 0.0}


def ts(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def t_of(text):
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc).timestamp())


DAYS = (t_of("2026-11-20 00:00"), t_of("2026-11-22 23:59"))


def hexs(rng, n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


PODS = ["payments-7f9c", "payments-5d2a", "payments-c81e", "payments-0b37", "payments-e3f6"]  # the pods

# Transient error families: (weight, incident window, error_class, text generator). They cluster in incidents.
TRANSIENT_ERRORS = [
    (30, ("2026-11-20 08:00", "2026-11-20 09:40"), "requests.exceptions.ReadTimeout",
     lambda r, o: f"upstream timeout after {r.choice([30000, 30000, 30000, 15000])}ms calling {r.choice(PODS)}"),
    (14, ("2026-11-20 08:10", "2026-11-20 09:35"), "payments.client.HTTPError",
     lambda r, o: f"HTTP 503 Service Unavailable from payments (attempt {r.randint(1, 3)}/3)"),
    (12, ("2026-11-20 19:30", "2026-11-20 20:15"), "payments.client.RateLimited",
     lambda r, o: f"429 Too Many Requests (retry after {r.randint(2, 30)}s)"),
    (12, ("2026-11-21 03:12", "2026-11-21 03:31"), "psycopg2.OperationalError",
     lambda r, o: f"connection refused: 10.0.{r.randint(1, 9)}.{r.randint(2, 250)}:5432"),
    (6, ("2026-11-21 03:12", "2026-11-21 05:30"), "psycopg2.errors.DeadlockDetected",
     lambda r, o: r.choice([f"deadlock detected while updating order {o}",
                            f"deadlock detected: process {r.randint(1000, 99999)} waits for ShareLock on "
                            f"transaction {r.randint(10**6, 10**7)}"])),
    (14, ("2026-11-21 13:40", "2026-11-21 16:50"), "inventory.ClientError",
     lambda r, o: "HTTP 503 Service Unavailable from inventory"),
    (6, ("2026-11-21 13:40", "2026-11-21 16:50"), "inventory.ClientError",
     lambda r, o: f"HTTP 504 Gateway Timeout from inventory after {r.randint(10, 60)}s"),
    (6, ("2026-11-22 10:05", "2026-11-22 10:35"), "ConnectionResetError",
     lambda r, o: f"read ECONNRESET from {r.choice(PODS)}:8443"),
    (5, ("2026-11-22 02:00", "2026-11-22 02:25"), "redis.exceptions.TimeoutError",
     lambda r, o: f"Timeout reading from redis-{r.randint(0, 2)}.cache.svc:6379"),
    (12, ("2026-11-22 15:05", "2026-11-22 16:10"), "shipping.client.HTTPError",
     lambda r, o: "HTTP 502 Bad Gateway from shipping-rates"),
]

# Permanent error families: (weight, error_class, generator of (text, body mutation)).
PERMANENT_ERRORS = [
    (26, "pydantic.ValidationError", "sku"),
    (14, "pydantic.ValidationError", "quantity"),
    (22, "orders.SchemaVersionError", "schema"),
    (22, "customers.client.HTTPError", "customer-404"),
    (20, "payments.client.HTTPError", "payment-422"),
    (10, "ValueError", "currency"),
    (6, "tax.client.HTTPError", "postcode-400"),
]


def weighted(rng, families):
    return rng.choices(families, weights=[f[0] for f in families])[0]


# ---------------------------------------------------------------------------------------------------------------
# Bodies.
# ---------------------------------------------------------------------------------------------------------------
def price_in(rng, eur, currency):
    p = eur * RATE[currency]
    return round(p, 2) if currency == "EUR" else round(round(p) - 0.01, 2) if p > 10 else round(p, 1)


def new_order(rng, order_id, created, customers):
    name, email, country, city, postcode, street = rng.choice(CUSTOMERS)
    currency = CURRENCY[country]
    items = []
    for sku, eur in rng.sample(CATALOGUE, rng.choice([1, 1, 2, 2, 2, 3, 3, 4, 5, 6])):
        items.append({"sku": sku, "quantity": rng.choice([1, 1, 1, 2, 2, 3, 4]), "price": price_in(rng, eur, currency)})
    method = rng.choice(["standard", "standard", "standard", "express", "pickup"])
    cost = price_in(rng, SHIPPING[method], currency) if SHIPPING[method] else 0
    order = {
        "order_id": order_id, "schema_version": 2,
        "created_at": ts(created)[:-1] + f".{rng.randint(0, 999):03d}Z",
        "customer": {"id": customers.setdefault(email, f"cus-{rng.randint(10000, 99999)}"), "email": email,
                     "name": name},
        "currency": currency,
        "total": round(sum(i["quantity"] * i["price"] for i in items) + cost, 2),
        "items": items,
        "shipping": {"method": method, "cost": cost,
                     "address": {"name": name, "street": street, "postcode": postcode, "city": city,
                                 "country": country}},
        "channel": rng.choice(["web", "web", "web", "ios", "android"]),
    }
    if rng.random() < 0.25:
        order["note"] = rng.choice(NOTES)
    return order


def to_v1(order):
    """The legacy single-line v1 shape: one item at the top level, with `qty`."""
    item = order["items"][0]
    v1 = {"order_id": order["order_id"], "schema_version": 1, "created_at": order["created_at"],
          "customer": order["customer"], "sku": item["sku"], "qty": item["quantity"], "price": item["price"],
          "currency": order["currency"], "total": round(item["quantity"] * item["price"] + order["shipping"]["cost"], 2),
          "shipping": order["shipping"]}
    return v1


def dumps(obj, rng):
    style = rng.random()
    if style < 0.7:
        return json.dumps(obj, ensure_ascii=False)
    if style < 0.95:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(obj, ensure_ascii=False, indent=2)


def dumps_trailing(value, everywhere):
    """A hand-rolled serializer (the legacy shop's template) that leaves trailing commas behind."""
    def ser(v, trailing):
        if isinstance(v, dict):
            parts = [f"{json.dumps(k)}: {ser(x, everywhere or k == 'items')}" for k, x in v.items()]
            return "{" + ", ".join(parts) + ("," if trailing else "") + "}"
        if isinstance(v, list):
            return "[" + ", ".join(ser(x, True) for x in v) + ("," if trailing else "") + "]"
        return json.dumps(v, ensure_ascii=False)
    return ser(value, everywhere)


def truncate_tail(text, rng, order):
    """Cut `text` somewhere after the items (a size-capped bridge truncated it): the order itself survives."""
    head = {k: v for k, v in order.items() if k not in ("shipping", "channel", "note")}
    start = len(str(head) if text.startswith("{'") else json.dumps(head, ensure_ascii=False)) + 1
    return text[:rng.randint(start, len(text) - 2)]


def protobuf(order):
    """orders.v3.OrderPlaced, encoded by hand (field numbers made up, wire format real)."""
    def varint(n):
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(no, value):
        if isinstance(value, int):
            return varint(no << 3) + varint(value)
        if isinstance(value, float):
            return varint(no << 3 | 1) + struct.pack("<d", value)
        data = value if isinstance(value, bytes) else value.encode()
        return varint(no << 3 | 2) + varint(len(data)) + data

    out = field(1, order["order_id"]) + field(2, order["customer"]["id"]) + field(3, order["currency"])
    out += field(4, float(order["total"]))
    for item in order["items"]:
        out += field(5, field(1, item["sku"]) + field(2, item["quantity"]) + field(3, round(item["price"] * 100)))
    return out + field(6, int(datetime.strptime(order["created_at"][:19], "%Y-%m-%dT%H:%M:%S").timestamp()))


def garbage(rng, order, kind):
    o, c = order["order_id"], order["customer"]["id"]
    if kind == "text":
        item = order["items"][0]
        return f"ORDER {o} {c} {item['quantity']}x {item['sku']} {order['total']} {order['currency']} status=PENDING"
    if kind == "html":
        return ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
                "</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n")
    if kind == "xml":
        lines = "".join(f"<line sku=\"{i['sku']}\" qty=\"{i['quantity']}\"/>" for i in order["items"])
        return f'<?xml version="1.0" encoding="UTF-8"?><order id="{o}"><customer>{c}</customer>{lines}</order>'
    if kind == "js":
        items = ", ".join(f"{{sku: '{i['sku']}', quantity: {i['quantity']}}}" for i in order["items"])
        return f"{{order_id: '{o}', customer: {{id: '{c}'}}, items: [{items}], currency: '{order['currency']}'}}"
    # half-binary: the protobuf body, decoded with errors="replace" by a proxy along the way
    return protobuf(order).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------------------------
# Messages.
# ---------------------------------------------------------------------------------------------------------------
def transient_failure(rng, family, order_id, first):
    _, _, error_class, text = family
    for _ in range(50):  # random ids/hosts/numbers must not spell a permanent pattern ("404", "422", ...)
        failure = {"reason": "rejected", "error_text": text(rng, order_id), "error_class": error_class}
        if classify(failure)[0] == "transient":
            break
    else:
        raise AssertionError(f"no transient text for {family}")
    if rng.random() < 0.1:
        del failure["error_class"]  # older consumer builds did not record it
    failure["receive_count"] = 3 if rng.random() < 0.85 else 5
    failure["first_failed_at"] = ts(first)
    failure["last_failed_at"] = ts(first + rng.randint(20, 300))
    if rng.random() < 0.05:
        del failure["first_failed_at"]
    return failure


def permanent_failure(rng, kind, error_class, order, first):
    o = order["order_id"]
    if kind == "sku":
        n = rng.randint(1, len(order["items"]))
        del order["items"][n - 1]["sku"]
        text = f"validation failed: field 'sku' missing in item {n}"
    elif kind == "quantity":
        n = rng.randint(1, len(order["items"]))
        order["items"][n - 1]["quantity"] = 0
        text = f"validation failed: quantity must be > 0 in item {n}"
    elif kind == "schema":
        order["schema_version"] = rng.choice([3, 7, 7])
        text = f"unknown schema version {order['schema_version']}"
    elif kind == "customer-404":
        text = f"HTTP 404 Not Found from customers: customer {order['customer']['id']} not found"
    elif kind == "payment-422":
        code = rng.choice(["card_declined", "expired_card", "insufficient_funds"])
        text = f"HTTP 422 Unprocessable Entity from payments: {code} for {o}"
    elif kind == "currency":
        order["currency"] = rng.choice(["XBT", "EURO", "eur"])
        text = f"invalid currency '{order['currency']}' in order {o}"
    else:
        text = f"HTTP 400 Bad Request from tax-service: postcode '{order['shipping']['address']['postcode']}'"
        order["shipping"]["address"]["country"] = rng.choice(["XX", "UK"])
        text += f" does not match country {order['shipping']['address']['country']}"
    return {"reason": "rejected", "error_text": text, "error_class": error_class, "receive_count": 1,
            "first_failed_at": ts(first), "last_failed_at": ts(first)}


def build(rng):
    # 1. Each message's category and dead-letter time (transient errors cluster in their incident's window).
    plan = []
    for category, (count, _) in CATEGORIES.items():
        for _ in range(count):
            if category in ("permanent", "no-failure-context"):
                family, t = None, rng.randint(*DAYS)
            else:
                family = weighted(rng, TRANSIENT_ERRORS)
                t = rng.randint(t_of(family[1][0]), t_of(family[1][1]))
            plan.append((t, category, family))
    plan.sort(key=lambda p: p[0])

    # 2. Build them in dead-letter order; order numbers grow with time.
    messages, customers, order_no, ids = [], {}, 104_230, set()
    sub_kinds = {"malformed-repairable": ["trailing-items", "trailing-all", "single-quotes", "truncated",
                                          "single-quotes+truncated"],
                 "malformed-unrepairable": ["text", "html", "xml", "js", "half-binary"],
                 "test-traffic": ["x-test", "x-traffic-type", "id-prefix", "body-field", "email"]}
    seen = Counter()
    for first, category, family in plan:
        order_no += rng.randint(1, 40)
        created = first - rng.randint(1, 90)
        order = new_order(rng, f"ord-{order_no:06d}", created, customers)
        msg_id = f"msg-{hexs(rng, 16)}"
        while msg_id in ids:
            msg_id = f"msg-{hexs(rng, 16)}"
        ids.add(msg_id)
        attrs = {"content-type": "application/json", "x-correlation-id": f"{hexs(rng, 8)}-{hexs(rng, 4)}-{hexs(rng, 4)}",
                 "x-producer": f"checkout-api/{rng.choice(['3.14.2', '3.14.2', '3.15.0'])}"}
        kinds = sub_kinds.get(category)
        sub = kinds[seen[category] % len(kinds)] if kinds else category
        seen[category] += 1
        failure = None if category in ("permanent", "no-failure-context") else \
            transient_failure(rng, family, order["order_id"], first)
        replay_count, body, body_b64 = 0, None, None

        if category == "permanent":
            family = weighted(rng, PERMANENT_ERRORS)
            failure = permanent_failure(rng, family[2], family[1], order, first)
            body = dumps(order, rng)
        elif category in ("transient", "no-failure-context", "replayed-before"):
            body = dumps(order, rng)
            if category == "replayed-before":
                replay_count = 3
                attrs["x-redrive-replay-count"] = "3"
        elif category == "malformed-repairable":
            attrs["x-producer"] = "legacy-shop-bridge/1.8.0"
            if sub.startswith("trailing"):
                body = dumps_trailing(order, everywhere=sub == "trailing-all")
            elif sub.startswith("single-quotes"):
                body = str(order)  # Python's repr(): single quotes
            else:
                body = json.dumps(order, ensure_ascii=False)
            if sub.endswith("truncated"):
                body = truncate_tail(body, rng, order)
        elif category == "malformed-unrepairable":
            attrs["x-producer"] = "legacy-shop-bridge/1.8.0"
            attrs["content-type"] = {"html": "text/html", "xml": "application/xml"}.get(sub, "application/json")
            body = garbage(rng, order, sub)
        elif category == "v1-qty":
            attrs["x-producer"] = f"mobile-app/{rng.choice(['4.12.0', '4.12.1'])}"
            body = dumps(to_v1(order), rng)
        elif category == "test-traffic":
            if sub == "x-test":
                attrs["x-test"] = "true"
            elif sub == "x-traffic-type":
                attrs["x-traffic-type"] = "loadtest"
                attrs["x-producer"] = "k6-loadtest/0.54.0"
            elif sub == "id-prefix":
                msg_id = "test-" + msg_id[4:]
            elif sub == "body-field":
                order["test"] = True
            else:
                n = rng.randint(1, 999)
                order["customer"].update(email=f"qa+{n}@example.com", name="QA Checkout Probe")
                order["shipping"]["address"]["name"] = "QA Checkout Probe"
                order["customer_email"] = f"qa+{n}@example.com"
            body = dumps(order, rng)
        elif category == "binary":
            attrs["content-type"] = "application/x-protobuf"
            attrs["x-proto-message"] = "orders.v3.OrderPlaced"
            attrs["x-producer"] = "checkout-grpc/0.9.1"
            body_b64 = base64.b64encode(protobuf(order)).decode()

        msg = {"id": msg_id}
        if body_b64 is not None:
            msg["body_base64"] = body_b64
        else:
            msg["body"] = body
        msg["attributes"] = attrs
        msg["origin"] = ORIGIN
        if failure is not None:
            msg["failure"] = failure
        msg["replay_count"] = replay_count
        messages.append((msg, category, sub))
    return messages


def check(condition, problem):
    if not condition:
        sys.exit(f"make_dlq.py: {problem}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=os.path.join(HERE, "dlq.jsonl"), help="default: %(default)s")
    parser.add_argument("--expect", metavar="FILE", help="also write the model's decisions (filter test --expect)")
    args = parser.parse_args()

    messages = build(Random(SEED))
    by_category, verdicts, run_verdicts, subs, expect = Counter(), Counter(), Counter(), Counter(), []
    for msg, category, sub in messages:
        verdict, reason, _, new_body, final_body = run_chain(msg)
        run_verdict = "parked" if msg["replay_count"] >= MAX_REPLAYS else verdict
        want = CATEGORIES[category][1]
        check(run_verdict == want, f"{msg['id']} ({category}/{sub}): the model says {run_verdict} ({reason})")
        if category == "replayed-before":
            check(verdict == "replay", f"{msg['id']}: parked, but the chain would not replay it anyway")
        if verdict == "replay":
            ok, why = check_order(final_body)
            check(ok, f"{msg['id']} ({category}/{sub}) would fail the canary: {why}")
        if category in ("transient", "permanent", "no-failure-context", "replayed-before", "test-traffic", "v1-qty"):
            check(300 <= len(final_body) <= 1200, f"{msg['id']}: body of {len(final_body)} bytes")
        by_category[category] += 1
        subs[(category, sub)] += 1
        verdicts[verdict] += 1
        run_verdicts[run_verdict] += 1
        record = {"id": msg["id"], "verdict": verdict}
        if reason is not None:
            record["reason"] = reason
        if new_body is not None:
            record["body"] = new_body.decode()
        expect.append(record)

    with open(args.output, "w", encoding="utf-8", newline="\n") as f:
        for msg, _, _ in messages:
            f.write(json.dumps(msg, ensure_ascii=False) + "\n")
    if args.expect:
        with open(args.expect, "w", encoding="utf-8", newline="\n") as f:
            for record in expect:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

    print(f"wrote {len(messages)} messages to {os.path.relpath(args.output)}")
    print(f"\n{'category':<24} {'count':>5}  expected outcome")
    for category, (_, want) in CATEGORIES.items():
        detail = ", ".join(f"{s} {n}" for (c, s), n in subs.items() if c == category and s != category)
        print(f"{category:<24} {by_category[category]:>5}  {want}" + (f"  ({detail})" if detail else ""))
    order = ("replay", "skip", "discard", "parked")
    print("\nredrive filter test (no loop guard): " +
          ", ".join(f"{verdicts[v]} {v}" for v in order[:3]))
    print(f"redrive run (max_replays = {MAX_REPLAYS}):         " +
          ", ".join(f"{run_verdicts[v]} {v}" for v in order))


if __name__ == "__main__":
    main()
