#!/usr/bin/env python3
"""The one-off script a team would write instead of redrive: oneoff_replay.py DLQ STAGING REMAINDER

Reads the DLQ export (JSONL), applies the same logic as the three example filters (route by error, repair JSON,
drop test traffic) and writes the messages to replay, with their repaired body, to STAGING and every other
message, as it was, to REMAINDER. No sandbox, no audit trail, no journal, no fsync.

The logic is the quickstart's Python model of the filters (`run_chain` in examples/quickstart/make_dlq.py,
imported), which the real filters are checked against. Prints a JSON summary on stdout. Python stdlib only.
"""
import base64
import json
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qsmodel  # noqa: E402


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[0])
    dlq, staging, remainder = sys.argv[1:]
    started = time.perf_counter()
    run_chain = qsmodel.load().run_chain
    counts = Counter()
    with open(dlq, encoding="utf-8") as src, \
            open(staging, "w", encoding="utf-8") as out, \
            open(remainder, "w", encoding="utf-8") as rest:
        for line in src:
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
                verdict, _reason, _module, new_body, _final = run_chain(msg)
            except (ValueError, KeyError, TypeError):
                counts["malformed"] += 1
                rest.write(line)
                continue
            counts[verdict] += 1
            if verdict != "replay":
                rest.write(line)
                continue
            if new_body is None:
                out.write(line)
                continue
            try:
                msg["body"] = new_body.decode("utf-8")
                msg.pop("body_base64", None)
            except UnicodeDecodeError:
                msg["body_base64"] = base64.b64encode(new_body).decode()
                msg.pop("body", None)
            out.write(json.dumps(msg, ensure_ascii=False) + "\n")
    elapsed = time.perf_counter() - started
    messages = sum(counts.values())
    print(json.dumps({"counts": dict(counts), "messages": messages, "elapsed_secs": round(elapsed, 3),
                      "msgs_per_sec": round(messages / elapsed, 1) if elapsed else None}))


if __name__ == "__main__":
    main()
