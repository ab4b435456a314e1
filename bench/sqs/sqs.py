#!/usr/bin/env python3
"""SQS plumbing and the two boto3 movers for bench/sqs/run.sh (boto3, against $SQS_ENDPOINT).

    sqs.py reset Q...                 delete each queue if it exists, then create it (standard queue)
    sqs.py delete Q...                delete each queue (missing ones are fine)
    sqs.py counts Q...                print "Q visible not-visible delayed" per queue
    sqs.py fill Q N [SIZE]            SendMessageBatch N JSON bodies of SIZE bytes (default 1024), each with the
                                      String attribute error="timeout talking to db"; then wait until Q holds N
    sqs.py verify Q N [SIZE]          receive everything in Q (without deleting) and check it holds each of the
                                      N bodies exactly once, unchanged, with the error attribute
    sqs.py idle [PCT] [TIMEOUT]       wait until the machine's CPUs are < PCT % busy (default 15) for 3 s
    sqs.py move DLQ STAGING N -- CMD  run CMD, poll the DLQ (adaptive interval, see cmd_move) until it has no
                                      message (visible, in flight or delayed) and STAGING holds N; print one
                                      JSON line: timings, CPU seconds of CMD, of moto_server ($MOTO_PID), of
                                      this poller and of the whole machine. CMD's output goes to
                                      $MOVE_STDOUT/$MOVE_STDERR when set
    sqs.py one-by-one DLQ STAGING     mover: receive 10 (long poll 1 s); per message SendMessage, then per
                                      message DeleteMessage
    sqs.py batched DLQ STAGING        mover: receive 10 (long poll 1 s); SendMessageBatch, then
                                      DeleteMessageBatch of the entries that were sent (per-entry Failed lists
                                      checked, failed sends retried)

Both movers stop after an empty receive once the DLQ reports no message at all.
$SQS_ENDPOINT defaults to http://127.0.0.1:9324; credentials and region come from the environment.
"""

import json
import os
import resource
import subprocess
import sys
import time

import boto3

ENDPOINT = os.environ.get("SQS_ENDPOINT", "http://127.0.0.1:9324")
ERROR = "timeout talking to db"
COUNT_ATTRS = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


def client():
    return boto3.client("sqs", endpoint_url=ENDPOINT, region_name=os.environ.get("AWS_REGION", "us-east-1"))


def url_of(sqs, name):
    return sqs.get_queue_url(QueueName=name)["QueueUrl"]


def counts(sqs, url):
    """(visible, not visible, delayed) of the queue at `url`."""
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=COUNT_ATTRS)["Attributes"]
    return tuple(int(a.get(k, 0)) for k in COUNT_ATTRS)


def cmd_reset(names, create=True):
    sqs = client()
    for name in names:
        try:
            sqs.delete_queue(QueueUrl=url_of(sqs, name))
        except sqs.exceptions.QueueDoesNotExist:
            pass
        if create:
            sqs.create_queue(QueueName=name)


def cmd_counts(names):
    sqs = client()
    for name in names:
        v, nv, d = counts(sqs, url_of(sqs, name))
        print(f"{name} {v} {nv} {d}")


def body_of(i, size):
    """{"order": i, "pad": "xxx..."}: valid JSON of exactly `size` bytes."""
    base = json.dumps({"order": i, "pad": ""}, separators=(",", ":"))
    pad = size - len(base)
    if pad < 0:
        raise SystemExit(f"sqs.py: SIZE {size} is too small (minimum {len(base)})")
    out = json.dumps({"order": i, "pad": "x" * pad}, separators=(",", ":"))
    assert len(out) == size
    return out


def attrs():
    return {"error": {"DataType": "String", "StringValue": ERROR}}


def cmd_fill(name, n, size):
    sqs = client()
    url = url_of(sqs, name)
    t0 = time.monotonic()
    for start in range(0, n, 10):
        entries = [
            {"Id": str(i - start), "MessageBody": body_of(i, size), "MessageAttributes": attrs()}
            for i in range(start, min(start + 10, n))
        ]
        r = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        if r.get("Failed"):
            raise SystemExit(f"sqs.py fill: SendMessageBatch failed entries: {r['Failed']}")
    deadline = time.monotonic() + 60
    while counts(sqs, url) != (n, 0, 0):
        if time.monotonic() > deadline:
            raise SystemExit(f"sqs.py fill: {name} holds {counts(sqs, url)} (visible, in flight, delayed), want {n}")
        time.sleep(0.1)
    print(f"filled {name} with {n} messages of {size} B in {time.monotonic() - t0:.1f} s", file=sys.stderr)


def cmd_verify(name, n, size):
    """Receive every message of the queue (long visibility, no delete) and check the bodies and attributes."""
    sqs = client()
    url = url_of(sqs, name)
    seen = {}
    bad_body = bad_attr = 0
    extra_attrs = set()
    empty = 0
    while empty < 2:
        r = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=600,
            MessageAttributeNames=["All"],
        )
        msgs = r.get("Messages", [])
        if not msgs:
            empty += 1
            continue
        empty = 0
        for m in msgs:
            try:
                order = json.loads(m["Body"])["order"]
            except (ValueError, KeyError, TypeError):
                order = None
            seen[order] = seen.get(order, 0) + 1
            if order is None or m["Body"] != body_of(order, size):
                bad_body += 1
            ma = m.get("MessageAttributes", {})
            if ma.get("error", {}).get("StringValue") != ERROR:
                bad_attr += 1
            extra_attrs.update(k for k in ma if k != "error")
    missing = [i for i in range(n) if i not in seen]
    doubled = {k: c for k, c in seen.items() if c > 1}
    unknown = [k for k in seen if not (isinstance(k, int) and 0 <= k < n)]
    report = {
        "received": sum(seen.values()),
        "distinct": len(seen),
        "missing": len(missing),
        "doubled": len(doubled),
        "unknown": len(unknown),
        "bodies_changed": bad_body,
        "error_attr_wrong": bad_attr,
        "other_attributes": sorted(extra_attrs),
    }
    print(json.dumps(report))
    if missing or doubled or unknown or bad_body or bad_attr:
        print(
            f"sqs.py verify: {name}: missing orders {missing[:20]}, doubled {dict(list(doubled.items())[:20])}, "
            f"unknown {unknown[:20]}, {bad_body} bodies changed, {bad_attr} without the error attribute",
            file=sys.stderr,
        )
        sys.exit(1)


# --- the two boto3 movers ----------------------------------------------------------------------------------------


def receive(sqs, url):
    r = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=1,
        MessageAttributeNames=["All"],
        AttributeNames=["All"],
    )
    return r.get("Messages", [])


def drained(sqs, url):
    return counts(sqs, url) == (0, 0, 0)


def cmd_one_by_one(dlq, staging):
    sqs = client()
    src, dst = url_of(sqs, dlq), url_of(sqs, staging)
    moved = 0
    while True:
        msgs = receive(sqs, src)
        if not msgs:
            if drained(sqs, src):
                break
            continue
        for m in msgs:
            kw = {"QueueUrl": dst, "MessageBody": m["Body"]}
            if m.get("MessageAttributes"):
                kw["MessageAttributes"] = m["MessageAttributes"]
            sqs.send_message(**kw)
        for m in msgs:
            sqs.delete_message(QueueUrl=src, ReceiptHandle=m["ReceiptHandle"])
        moved += len(msgs)
    print(f"one-by-one: moved {moved}", file=sys.stderr)


def cmd_batched(dlq, staging):
    sqs = client()
    src, dst = url_of(sqs, dlq), url_of(sqs, staging)
    moved = send_failures = delete_failures = 0
    while True:
        msgs = receive(sqs, src)
        if not msgs:
            if drained(sqs, src):
                break
            continue
        pending = {}
        for i, m in enumerate(msgs):
            e = {"Id": str(i), "MessageBody": m["Body"]}
            if m.get("MessageAttributes"):
                e["MessageAttributes"] = m["MessageAttributes"]
            pending[str(i)] = e
        sent = []
        for _attempt in range(3):
            r = sqs.send_message_batch(QueueUrl=dst, Entries=list(pending.values()))
            for ok in r.get("Successful", []):
                sent.append(ok["Id"])
                pending.pop(ok["Id"], None)
            for f in r.get("Failed", []):
                send_failures += 1
                print(f"batched: send failed: {f}", file=sys.stderr)
            if not pending:
                break
        # only what staging confirmed leaves the DLQ; the rest comes back after the visibility timeout
        if sent:
            r = sqs.delete_message_batch(
                QueueUrl=src,
                Entries=[{"Id": i, "ReceiptHandle": msgs[int(i)]["ReceiptHandle"]} for i in sent],
            )
            for f in r.get("Failed", []):
                delete_failures += 1
                print(f"batched: delete failed: {f}", file=sys.stderr)
        moved += len(sent)
    print(f"batched: moved {moved}, {send_failures} failed send entries, {delete_failures} failed deletes",
          file=sys.stderr)
    if send_failures or delete_failures:
        sys.exit(1)


# --- timing ------------------------------------------------------------------------------------------------------


def proc_cpu(pid):
    """CPU seconds (user + system) used so far by process `pid`, from /proc."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def machine_busy():
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def cmd_idle(max_busy, timeout):
    """Wait until the machine's CPUs are below max_busy (a fraction) for 3 one-second windows in a row."""
    deadline = time.monotonic() + timeout
    quiet = 0
    busy = 1.0
    while quiet < 3:
        b0, t0 = machine_busy()
        time.sleep(1)
        b1, t1 = machine_busy()
        busy = (b1 - b0) / max(t1 - t0, 1)
        quiet = quiet + 1 if busy < max_busy else 0
        if time.monotonic() > deadline:
            print(f"sqs.py idle: the machine is still {100 * busy:.0f} % busy after {timeout:.0f} s", file=sys.stderr)
            sys.exit(1)
    print(f"machine idle ({100 * busy:.0f} % busy)", file=sys.stderr)


def cmd_move(dlq, staging, n, cmd):
    """Time CMD moving N messages from DLQ to STAGING.

    moto's GetQueueAttributes walks every message of the queue (several clock reads each), so one poll of a full
    1000-message queue costs moto about as much CPU as a ReceiveMessage. Polling at a fixed short interval would
    take a large share of moto's single core from the mover. So only the DLQ is polled (staging is checked once
    the DLQ is empty: every mover sends before it deletes), and the polls are spaced by what they cost: before
    the move, two polls of the full DLQ measure moto's CPU per poll and queued message (c); after a poll that
    saw r messages, the next waits c x r / POLL_SHARE (default 0.02: polling takes ~2 % of moto's CPU),
    within [POLL_MS, POLL_MAX_MS]. Polls are rare while the DLQ is full and every POLL_MS near the end, so the
    end of the move is seen to within a fraction of a second. The same c gives the polling's total moto CPU.
    Without moto's pid (no CPU figures), the wait is POLL_K x the last poll's duration instead.
    """
    poll = float(os.environ.get("POLL_MS", "100")) / 1000
    poll_k = float(os.environ.get("POLL_K", "20"))
    poll_share = float(os.environ.get("POLL_SHARE", "0.02"))
    poll_max = float(os.environ.get("POLL_MAX_MS", "30000")) / 1000
    timeout = float(os.environ.get("MOVE_TIMEOUT", "1800"))
    exit_grace = float(os.environ.get("EXIT_GRACE", "10"))
    moto = os.environ.get("MOTO_PID")
    sqs = client()
    src, dst = url_of(sqs, dlq), url_of(sqs, staging)
    if counts(sqs, src) != (n, 0, 0) or counts(sqs, dst) != (0, 0, 0):
        raise SystemExit(f"sqs.py move: before the move {dlq} must hold {n} and {staging} 0")

    # What one poll costs moto per queued message (two polls of the full DLQ).
    m0 = proc_cpu(moto)
    for _ in range(2):
        counts(sqs, src)
    m1 = proc_cpu(moto)
    poll_cost_per_msg = None if m0 is None or m1 is None else (m1 - m0) / (2 * n)

    polls = 0
    polled_msgs = 0  # sum over the polls of the messages the DLQ held (what moto walked)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    moto0 = proc_cpu(moto)
    busy0, total0 = machine_busy()
    t0 = time.monotonic()
    out_file = open(os.environ["MOVE_STDOUT"], "w") if os.environ.get("MOVE_STDOUT") else None
    err_file = open(os.environ["MOVE_STDERR"], "w") if os.environ.get("MOVE_STDERR") else None
    proc = subprocess.Popen(cmd, stdout=out_file, stderr=err_file)
    first_move = done = exited = None
    d = (n, 0, 0)
    s = None
    while True:
        q0 = time.monotonic()
        d = counts(sqs, src)
        now = time.monotonic()
        polls += 1
        polled_msgs += sum(d)
        took = now - q0
        if first_move is None and d[0] < n:
            first_move = now
        if exited is None and proc.poll() is not None:
            exited = now
        if d == (0, 0, 0):
            s = counts(sqs, dst)
            polls += 1
            if s == (n, 0, 0):
                done = now
                break
        if exited is not None and proc.returncode != 0:
            break
        if exited is not None and now - exited > exit_grace:
            break  # the mover says it is done, but the DLQ still holds messages (or staging lacks some)
        if now - t0 > timeout:
            proc.terminate()
            break
        wait = poll_k * took if poll_cost_per_msg is None else poll_cost_per_msg * sum(d) / poll_share
        time.sleep(min(poll_max, max(poll, wait)))
    moto1 = proc_cpu(moto)
    busy1, total1 = machine_busy()
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        rc = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.terminate()
        rc = proc.wait()
    if exited is None:
        exited = time.monotonic()
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    d_after, s_after = counts(sqs, src), counts(sqs, dst)
    tick = os.sysconf("SC_CLK_TCK")
    mover_cpu = child.ru_utime + child.ru_stime
    poller_cpu = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
    moto_cpu = None if moto0 is None or moto1 is None else moto1 - moto0
    machine_cpu = (busy1 - busy0) / tick
    out = {
        "rc": rc,
        "done": done is not None,
        "seconds": None if done is None else done - t0,
        "first_move": None if first_move is None else first_move - t0,
        "exit": exited - t0,
        "dlq": list(d),
        "staging": None if s is None else list(s),
        "dlq_after_exit": list(d_after),
        "staging_after_exit": list(s_after),
        "polls": polls,
        # CPU seconds until done (the mover's: its whole run, including its end-of-pass wait)
        "moto_cpu": moto_cpu,
        "moto_poll_cpu_per_msg": poll_cost_per_msg,
        "moto_poll_cpu": None if poll_cost_per_msg is None else poll_cost_per_msg * polled_msgs,
        "mover_cpu": mover_cpu,
        "mover_maxrss_mib": child.ru_maxrss / 1024,
        "poller_cpu": poller_cpu,
        "machine_cpu": machine_cpu,
        "machine_busy": (busy1 - busy0) / max(total1 - total0, 1),
        # busy CPU of anything but moto, the mover and this poller (other work on the machine; the mover's CPU
        # after `done`, e.g. its end-of-pass wait, is small and counted against it)
        "other_cpu": machine_cpu - (moto_cpu or 0) - poller_cpu - mover_cpu,
    }
    print(json.dumps(out))
    if done is None:
        sys.exit(1)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    op, args = argv[1], argv[2:]
    if op == "reset":
        cmd_reset(args)
    elif op == "delete":
        cmd_reset(args, create=False)
    elif op == "counts":
        cmd_counts(args)
    elif op == "fill":
        cmd_fill(args[0], int(args[1]), int(args[2]) if len(args) > 2 else 1024)
    elif op == "verify":
        cmd_verify(args[0], int(args[1]), int(args[2]) if len(args) > 2 else 1024)
    elif op == "idle":
        cmd_idle(float(args[0]) / 100 if args else 0.15, float(args[1]) if len(args) > 1 else 600)
    elif op == "move":
        sep = args.index("--")
        cmd_move(args[0], args[1], int(args[2]), args[sep + 1 :])
    elif op == "one-by-one":
        cmd_one_by_one(args[0], args[1])
    elif op == "batched":
        cmd_batched(args[0], args[1])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
