#!/usr/bin/env python3
"""Write a big JSONL DLQ export in the quickstart's mix: bench/pipeline/make_big_dlq.py N OUT

The messages come from the quickstart's own generator (examples/quickstart/make_dlq.py, imported, not copied):
`build(Random(seed))` makes the 600-message quickstart mix (264 transient, 120 permanent, 72 malformed but
repairable, 48 v1, 48 test traffic, 18 garbage, 12 binary, 12 without failure context, 6 replayed before); it is
called with --pool-seeds different seeds (the quickstart's seed first) to get a pool of distinct messages, which is
cycled to N lines. Every line gets a unique id: the pool message's id plus `-<line index>` (a `test-...` id stays
a `test-...` id).

Bodies smaller than --body-bytes (1 KiB) are padded to that size in a way that keeps them what they are:
- JSON objects (valid, trailing commas, truncated, Python-repr single quotes, JS literals) get a `history` array of
  order events and a `trace_id` string inserted as the first keys, in the body's own quoting style;
- the nginx HTML page and the XML order get a comment; plain text and half-binary text get ` trace=<hex>` appended;
- protobuf bodies get an extra length-delimited field (number 15).
Each padded pool message is run through the quickstart's Python model of the three filters (make_dlq.run_chain):
if padding changed its verdict, reason or deciding module, or a replayed body would fail the fixed consumer's
check, the message is kept unpadded (counted in the .meta.json).

Writes OUT and OUT.meta.json (counts the model expects: replay, skip, discard; sizes). Deterministic: the same N
and options give the same bytes. Python stdlib only.
"""
import argparse
import base64
import json
import os
import sys
import time
from collections import Counter
from random import Random

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qsmodel  # noqa: E402

EVENTS = ["order.created", "cart.validated", "payment.authorized", "inventory.reserved", "order.published",
          "consumer.received", "consumer.retry_scheduled", "consumer.failed", "dlq.routed"]


def hexs(rng, n):
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def ts(model, t):
    return model.ts(t)


def object_style(text):
    """How a JSON-ish object body quotes its keys: 'py' (str(dict)), 'js' (bare keys), 'compact' or 'json'."""
    if text.startswith("{'"):
        return "py"
    if not text.startswith('{"') and not text.startswith("{\n"):
        return "js"
    return "json" if '": ' in text else "compact"


def object_fragment(style, events, trace):
    """`history` and `trace_id` as leading members of an object, in the body's style, with the separator."""
    if style in ("py", "js"):
        key = repr if style == "py" else str
        parts = [f"{key('history')}: {events!r}"] + ([f"{key('trace_id')}: {trace!r}"] if trace is not None else [])
        return ", ".join(parts) + ", "
    seps = (", ", ": ") if style == "json" else (",", ":")
    members = {"history": events}
    if trace is not None:
        members["trace_id"] = trace
    inner = json.dumps(members, ensure_ascii=False, separators=seps)[1:-1]
    return inner + seps[0]


def pad_text(model, text, target, rng):
    size = len(text.encode())
    if size >= target - 8:
        return None
    if text.startswith("{"):
        style = object_style(text)
        events, t = [], model.DAYS[0] + rng.randint(0, 2 * 86400)
        while True:
            t += rng.randint(1, 900)
            event = {"at": ts(model, t), "event": EVENTS[len(events) % len(EVENTS)]}
            if size + len(object_fragment(style, events + [event], "").encode()) > target:
                break
            events.append(event)
        room = target - size - len(object_fragment(style, events, "").encode())
        trace = hexs(rng, room) if room > 0 else None
        if trace is None and not events:
            return None
        return text[0] + object_fragment(style, events, trace) + text[1:]
    if "</body>" in text:
        at, wrap = text.rindex("</body>"), ("<!-- trace ", " -->")
    elif text.startswith("<?xml") and "</order>" in text:
        at, wrap = text.rindex("</order>"), ("<!-- trace ", " -->")
    else:
        at, wrap = len(text), (" trace=", "")
    room = target - size - len((wrap[0] + wrap[1]).encode())
    if room <= 0:
        return None
    return text[:at] + wrap[0] + hexs(rng, room) + wrap[1] + text[at:]


def pad_protobuf(raw, target, rng):
    room = target - len(raw) - 1  # tag byte of field 15, wire type 2 (0x7a)
    room -= 1 if room - 1 < 128 else 2
    if room <= 0:
        return None
    length = bytes([room]) if room < 128 else bytes([(room & 0x7F) | 0x80, room >> 7])
    return raw + b"\x7a" + length + hexs(rng, room).encode()


def padded(model, msg, target, rng):
    out = dict(msg)
    if "body_base64" in msg:
        body = pad_protobuf(base64.b64decode(msg["body_base64"]), target, rng)
        if body is None:
            return None
        out["body_base64"] = base64.b64encode(body).decode()
    else:
        body = pad_text(model, msg.get("body", ""), target, rng)
        if body is None:
            return None
        out["body"] = body
    return out


def body_len(msg):
    if "body_base64" in msg:
        return len(base64.b64decode(msg["body_base64"]))
    return len(msg.get("body", "").encode())


def build_pool(model, seeds, target):
    """[(message, verdict)] for `seeds` builds of the quickstart mix, padded where the model agrees."""
    pool, stats, ids = [], Counter(), set()
    for k in range(seeds):
        seed = model.SEED + k
        rng = Random(f"pad-{seed}")
        for msg, category, sub in model.build(Random(seed)):
            verdict, reason, decided_by, _, final = model.run_chain(msg)
            candidate = padded(model, msg, target, rng) if target > 0 else None
            if candidate is not None:
                v2, r2, d2, _, final2 = model.run_chain(candidate)
                ok = (v2, r2, d2) == (verdict, reason, decided_by)
                if ok and v2 == "replay":
                    ok = model.check_order(final2)[0]
                if ok:
                    msg = candidate
                    stats["padded"] += 1
                else:
                    stats["kept unpadded: padding would change the outcome"] += 1
                    print(f"make_big_dlq: {msg['id']} ({category}/{sub}) kept unpadded: padded it would be "
                          f"{v2}/{d2} ({r2}) instead of {verdict}/{decided_by} ({reason})", file=sys.stderr)
            else:
                stats["unpadded (already large enough)"] += 1
            if msg["id"] in ids:
                sys.exit(f"make_big_dlq: duplicate id {msg['id']} in the pool")
            ids.add(msg["id"])
            pool.append((msg, verdict))
    return pool, stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, help="how many messages")
    parser.add_argument("out", help="the JSONL file to write")
    parser.add_argument("--pool-seeds", type=int, default=8, help="quickstart builds in the pool (600 each; default 8)")
    parser.add_argument("--body-bytes", type=int, default=1024, help="pad bodies to this size (0: no padding)")
    args = parser.parse_args()
    if args.n < 1 or args.pool_seeds < 1:
        parser.error("N and --pool-seeds must be at least 1")

    started = time.perf_counter()
    model = qsmodel.load()
    pool, pool_stats = build_pool(model, args.pool_seeds, args.body_bytes)
    # Each pool line, split around the end of its id (always the first key), as bytes.
    parts = []
    for msg, _ in pool:
        line = json.dumps(msg, ensure_ascii=False)
        head = '{"id": ' + json.dumps(msg["id"], ensure_ascii=False)
        assert line.startswith(head) and head.endswith('"'), line[:80]
        parts.append((head[:-1].encode(), (line[len(head) - 1:] + "\n").encode()))

    size, count, expected = len(pool), Counter(), Counter()
    tmp = args.out + ".tmp"
    written = 0
    with open(tmp, "wb") as f:
        chunk = []
        for i in range(args.n):
            head, tail = parts[i % size]
            chunk.append(head)
            chunk.append(b"-%07d" % i)
            chunk.append(tail)
            if len(chunk) >= 30000:
                written += f.write(b"".join(chunk))
                chunk.clear()
        written += f.write(b"".join(chunk))
    os.replace(tmp, args.out)

    full, rest = divmod(args.n, size)
    body_bytes = 0
    for index, (msg, verdict) in enumerate(pool):
        times = full + (1 if index < rest else 0)
        count[verdict] += times
        body_bytes += times * body_len(msg)
    expected.update(count)
    meta = {
        "messages": args.n,
        "pool": size,
        "pool_seeds": args.pool_seeds,
        "body_bytes_target": args.body_bytes,
        "body_bytes_mean": round(body_bytes / args.n, 1),
        "line_bytes_mean": round(written / args.n, 1),
        "file_bytes": written,
        "pool_padding": dict(pool_stats),
        "expected": {v: expected[v] for v in ("replay", "skip", "discard")},
        "generate_secs": round(time.perf_counter() - started, 2),
    }
    with open(args.out + ".meta.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"wrote {args.n} messages ({written / 2**20:.0f} MiB, mean body {meta['body_bytes_mean']} B) to "
          f"{args.out} in {meta['generate_secs']} s; the model expects " +
          ", ".join(f"{n} {v}" for v, n in meta["expected"].items()))


if __name__ == "__main__":
    main()
