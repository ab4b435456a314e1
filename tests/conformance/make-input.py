#!/usr/bin/env python3
"""Write the conformance input: the committed cases plus one message with a 200 KiB body.

    python3 tests/conformance/make-input.py OUT.jsonl

The big body is generated, not committed: 200 KiB of JSON text with non-ASCII characters in it.
"""

import json
import pathlib
import sys

here = pathlib.Path(__file__).resolve().parent
out = pathlib.Path(sys.argv[1])
cases = (here / "route-by-error" / "cases.jsonl").read_text(encoding="utf-8")
chunk = "0123456789abcdef-ü-数据-"  # mixed ASCII and multi-byte UTF-8
pad = (chunk * (200 * 1024 // len(chunk.encode("utf-8")) + 1))
while len(pad.encode("utf-8")) > 200 * 1024 - 16:
    pad = pad[:-1]
big = {
    "id": "c-18-200k-body",
    "body": json.dumps({"pad": pad}, ensure_ascii=False),
    "origin": {"system": "sqs", "dlq": "orders-dlq", "original_queue": None},
    "failure": {"error_text": "Lambda task timed out after 900 seconds", "receive_count": 4},
}
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(cases + json.dumps(big, ensure_ascii=False) + "\n", encoding="utf-8")
