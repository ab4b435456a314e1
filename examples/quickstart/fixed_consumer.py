#!/usr/bin/env python3
"""The "fixed" orders consumer, as the canary gate of `redrive run` calls it.

redrive runs `python3 fixed_consumer.py` (via `sh -c`, in the config file's directory) after the canary batch was
forwarded, with:
  REDRIVE_CANARY_IDS  comma-separated ids of the canary messages (they also come on stdin, one per line)
  REDRIVE_STAGING     where they were forwarded, e.g. file:/abs/path/out/staging.jsonl

It processes each canary message the way the fixed consumer would, prints one line per message and a summary, and
exits 0 when all are fine, 1 when one is not (or with --fail, to demo a failing gate), 2 when it cannot even check
(no staging file, a canary id not in it). Standard library only.
"""
import base64
import json
import os
import sys


def check_order(body):
    """Validate one order body (bytes or str). Returns (ok, text): text describes the order or says what is wrong."""
    try:
        order = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        return False, f"body is not valid JSON ({err})"
    if not isinstance(order, dict):
        return False, "body is not a JSON object"
    if not order.get("order_id"):
        return False, "no order_id"
    # v2 orders carry items[]; legacy single-line orders (v1, migrated by repair-json) carry sku/quantity on top.
    if "items" in order:
        items = order["items"]
        if not isinstance(items, list) or not items:
            return False, f"{order['order_id']}: items is empty or not a list"
    elif "sku" in order or "qty" in order or "quantity" in order:
        items = [order]
    else:
        return False, f"{order['order_id']}: no items"
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or not item.get("sku"):
            return False, f"{order['order_id']}: item {n} has no sku"
        quantity = item.get("quantity")
        if quantity is None and "qty" in item:
            return False, f"{order['order_id']}: item {n} has 'qty' but no 'quantity' (a v1 payload, not migrated)"
        if type(quantity) is not int or quantity <= 0:  # bool is not an int here
            return False, f"{order['order_id']}: item {n} quantity must be an integer > 0, got {quantity!r}"
    currency, total = order.get("currency"), order.get("total")
    if not isinstance(currency, str) or len(currency) != 3:
        return False, f"{order['order_id']}: bad or missing currency {currency!r}"
    if type(total) not in (int, float) or total < 0:
        return False, f"{order['order_id']}: total must be a number >= 0, got {total!r}"
    return True, f"{order['order_id']}: {len(items)} item{'s' if len(items) != 1 else ''}, {total:.2f} {currency}"


def die(problem):
    print(f"fixed_consumer: {problem}", file=sys.stderr)
    sys.exit(2)


def main():
    force_fail = "--fail" in sys.argv[1:]

    # The canary ids: from the environment, else from stdin (one per line).
    ids_text = os.environ.get("REDRIVE_CANARY_IDS", "")
    if not ids_text.strip() and not sys.stdin.isatty():
        ids_text = ",".join(sys.stdin.read().split())
    ids = [i.strip() for i in ids_text.split(",") if i.strip()]
    if not ids:
        die("no canary ids (set REDRIVE_CANARY_IDS or pass them on stdin)")

    # The staging destination: a file: URL (relative paths are relative to this directory).
    staging = os.environ.get("REDRIVE_STAGING", "")
    if not staging.startswith("file:"):
        die(f"REDRIVE_STAGING must be a file: URL, got {staging!r}")
    path = staging[len("file:"):]
    try:
        with open(path, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except OSError as err:
        die(f"cannot read the staging file {path}: {err.strerror}")
    except ValueError as err:
        die(f"the staging file {path} has a line that is not JSON: {err}")
    staged = {msg.get("id"): msg for msg in lines}  # a re-forwarded id: the last copy wins
    missing = [i for i in ids if i not in staged]
    if missing:
        die(f"{len(missing)} canary message(s) not in {path}: {', '.join(missing)}")

    # Process each canary message like the fixed consumer would.
    failed = 0
    for msg_id in ids:
        msg = staged[msg_id]
        if "body_base64" in msg:
            body = base64.b64decode(msg["body_base64"])
        else:
            body = msg.get("body", "")
        ok, text = check_order(body)
        if ok and force_fail:
            ok, text = False, f"{text} (forced failure: --fail)"
        failed += not ok
        print(f"ok {msg_id} {text}" if ok else f"FAIL {msg_id}: {text}")

    print(f"canary: {len(ids) - failed}/{len(ids)} ok" + ("" if failed == 0 else f", {failed} failed"))
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
