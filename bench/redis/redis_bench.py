"""Helpers for bench/redis/run.sh: fill a dead-letter stream, the Python mover a team would write, and the check
that every message arrived exactly once, unchanged.

    redis_bench.py reset URL STREAM...              delete the streams, then create each empty (XGROUP CREATE MKSTREAM)
    redis_bench.py delete URL STREAM...             delete the streams
    redis_bench.py fill URL STREAM N SIZE           N entries: payload of SIZE bytes, error, failed_at, attempts
    redis_bench.py loop URL FROM TO GROUP           the Python mover (see cmd_loop)
    redis_bench.py check URL DLQ STAGING N SIZE     the DLQ empty, each of the N bodies once at STAGING, unchanged
    redis_bench.py pid URL                          the server's process id (for its CPU time)
"""

import json
import sys
import time

import redis

BATCH = 500


def body(i, size):
    head = json.dumps({"order": i, "quantity": 2, "pad": ""})
    return (head[:-2] + "x" * max(0, size - len(head)) + '"}').encode()


def connect(url):
    return redis.Redis.from_url(url)


def cmd_reset(url, *streams):
    r = connect(url)
    for s in streams:
        r.delete(s)
        # A stream that exists (redrive refuses to create a destination stream: a typo would otherwise make one).
        r.xgroup_create(s, "bench-keep", id="$", mkstream=True)
        r.xgroup_destroy(s, "bench-keep")


def cmd_delete(url, *streams):
    connect(url).delete(*streams)


def cmd_fill(url, stream, n, size):
    r = connect(url)
    n, size = int(n), int(size)
    failed_at = int(time.time()) - 3600
    for start in range(0, n, 1000):
        p = r.pipeline(transaction=False)
        for i in range(start, min(n, start + 1000)):
            p.xadd(stream, {"payload": body(i, size), "error": "upstream timeout after 30s",
                            "failed_at": failed_at, "attempts": 5, "original_stream": "orders"})
        p.execute()
    if r.xlen(stream) != n:
        sys.exit(f"fill: {stream} holds {r.xlen(stream)} entries, not {n}")


def cmd_loop(url, source, dest, group):
    """Read a batch through a consumer group, XADD each entry's fields to the destination (pipelined; the replies
    are the confirmation), then XACK + XDEL the batch: at-least-once, what redrive's `ack=delete` does. Ends when
    the group has nothing new."""
    r = connect(url)
    try:
        r.xgroup_create(source, group, id="0")
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    while True:
        got = r.xreadgroup(group, "loop", {source: ">"}, count=BATCH)
        if not got:
            break
        entries = got[0][1]
        if not entries:
            break
        p = r.pipeline(transaction=False)
        for _id, fields in entries:
            p.xadd(dest, fields)
        p.execute()
        ids = [i for i, _ in entries]
        p = r.pipeline(transaction=False)
        p.xack(source, group, *ids)
        p.xdel(source, *ids)
        p.execute()


def cmd_check(url, dlq, staging, n, size):
    r = connect(url)
    n, size = int(n), int(size)
    left = r.xlen(dlq)
    if left:
        sys.exit(f"check: {dlq} still holds {left} entries")
    seen = {}
    last = "-"
    while True:
        chunk = r.xrange(staging, min=last, max="+", count=5000)
        if last != "-":
            chunk = chunk[1:]
        if not chunk:
            break
        for _id, fields in chunk:
            payload = fields.get(b"payload", fields.get(b"body"))
            seen[payload] = seen.get(payload, 0) + 1
        last = chunk[-1][0]
    twice = sum(1 for c in seen.values() if c > 1)
    missing = sum(1 for i in range(n) if body(i, size) not in seen)
    extra = len(seen) - (n - missing)
    if twice or missing or extra or sum(seen.values()) != n:
        sys.exit(f"check: {staging}: {sum(seen.values())} entries, {twice} bodies more than once, "
                 f"{missing} missing, {extra} unexpected")
    print(f"check: {dlq} empty, {staging} holds each of the {n} bodies once, unchanged", file=sys.stderr)


def cmd_pid(url):
    print(connect(url).info("server")["process_id"])


if __name__ == "__main__":
    commands = {"reset": cmd_reset, "delete": cmd_delete, "fill": cmd_fill, "loop": cmd_loop, "check": cmd_check,
                "pid": cmd_pid}
    if len(sys.argv) < 3 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
