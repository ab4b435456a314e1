#!/usr/bin/env python3
"""Queue plumbing for bench/rabbitmq/run.sh, over one AMQP connection (pika): much faster than rabbitmqctl,
which boots an Erlang VM per call (~1 s here).

    mq.py reset Q...                  delete then declare each queue (durable, classic)
    mq.py delete Q...                 delete each queue (missing ones are fine)
    mq.py depth Q...                  print "Q messages consumers" per queue (passive declare)
    mq.py fill Q N [SIZE]             publish N persistent JSON bodies of SIZE bytes (default 1024) with
                                      dead-letter headers, then wait until the queue holds exactly N
    mq.py idle [PCT] [TIMEOUT]        wait until the machine's CPUs are < PCT % busy (default 10) for 3 s
    mq.py move DLQ STAGING N -- CMD…  run CMD, poll both queues every POLL_MS (default 100) ms until DLQ is
                                      empty and STAGING holds N; print one JSON line: timings, CPU seconds
                                      of CMD and of the broker (process $BROKER_PID), machine CPU busy;
                                      CMD's stdout/stderr go to $MOVE_STDOUT/$MOVE_STDERR when set

The URL is $AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f).
"""

import datetime
import json
import os
import resource
import subprocess
import sys
import time

import pika

URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")


def connect():
    params = pika.URLParameters(URL)
    params.heartbeat = 0  # the move loop may sit in subprocess/poll calls; no heartbeat needed locally
    return pika.BlockingConnection(params)


def cmd_reset(queues, declare=True):
    conn = connect()
    ch = conn.channel()
    for q in queues:
        ch.queue_delete(queue=q)
        if declare:
            ch.queue_declare(queue=q, durable=True)
    conn.close()


def cmd_depth(queues):
    conn = connect()
    poller = Poller(conn)
    for q in queues:
        m, c = poller.depth(q)
        print(f"{q} missing" if m < 0 else f"{q} {m} {c}")
    conn.close()


def body_of(i, size):
    """A valid JSON order of exactly `size` bytes (padded in a `note` field)."""
    doc = {
        "order_id": f"ord-{i:08d}",
        "customer": {"id": f"cust-{i % 9973:05d}", "name": "Ada Lovelace", "email": "ada@example.com"},
        "items": [
            {"sku": "SKU-1001", "qty": 2, "price": 19.99},
            {"sku": "SKU-2002", "qty": 1, "price": 5.49},
            {"sku": "SKU-3003", "qty": 4, "price": 2.25},
        ],
        "total": 54.47,
        "currency": "EUR",
        "note": "",
    }
    base = json.dumps(doc, separators=(",", ":"))
    pad = size - len(base)
    if pad < 0:
        raise SystemExit(f"mq.py: SIZE {size} is too small (minimum {len(base)})")
    doc["note"] = "x" * pad
    out = json.dumps(doc, separators=(",", ":")).encode()
    assert len(out) == size
    return out


def cmd_fill(queue, n, size):
    conn = connect()
    ch = conn.channel()
    # pika's BlockingChannel has no windowed confirm API: publish without confirms, then check the depth.
    # Messages on one connection are delivered in order; the final depth check (below) fails loudly if any
    # publish did not land.
    headers_base = {
        "x-death": [
            {
                "count": 1,
                "reason": "rejected",
                "queue": "orders",
                "time": datetime.datetime(2026, 11, 1, 10, 0, 0),
                "exchange": "",
                "routing-keys": ["orders"],
            }
        ],
        "x-first-death-reason": "rejected",
        "x-first-death-queue": "orders",
        "x-first-death-exchange": "",
        "x-tenant": "acme",
    }
    t0 = time.monotonic()
    for i in range(n):
        props = pika.BasicProperties(
            delivery_mode=2,
            content_type="application/json",
            message_id=f"m-{i:08d}",
            headers=headers_base,
        )
        ch.basic_publish(exchange="", routing_key=queue, body=body_of(i, size), properties=props)
    wait_for(conn, {queue: n}, timeout=300)
    conn.close()
    print(f"filled {queue} with {n} messages of {size} B in {time.monotonic() - t0:.1f} s", file=sys.stderr)


def wait_for(conn, want, timeout):
    deadline = time.monotonic() + timeout
    poller = Poller(conn)
    while True:
        got = {q: poller.depth(q)[0] for q in want}
        if got == want:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"mq.py: timed out waiting for {want}; queues hold {got}")
        time.sleep(0.05)


class Poller:
    """Passive declares on one long-lived channel (reopened if the broker closes it)."""

    def __init__(self, conn):
        self.conn = conn
        self.ch = None

    def depth(self, queue):
        """(ready messages, consumers); (-1, 0) for a missing queue."""
        if self.ch is None or not self.ch.is_open:
            self.ch = self.conn.channel()
        try:
            ok = self.ch.queue_declare(queue=queue, passive=True).method
            return ok.message_count, ok.consumer_count
        except pika.exceptions.ChannelClosedByBroker:
            self.ch = None
            return -1, 0


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


def thread_cpu(pid):
    """{tid: (thread name, CPU seconds)} for process `pid`, from /proc."""
    out = {}
    if not pid:
        return out
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
            fields = rest.split()
            out[int(tid)] = (head.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / tick)
        except (OSError, IndexError, ValueError):
            continue
    return out


def by_name(threads):
    """{name: CPU seconds} from thread_cpu's output; same-named threads become name, name#2, ... (tid order)."""
    out = {}
    for tid in sorted(threads):
        name, cpu = threads[tid]
        key, i = name, 1
        while key in out:
            i += 1
            key = f"{name}#{i}"
        out[key] = cpu
    return out


def top_threads(cpu, seconds, k=8):
    """The k busiest thread names as {name: share of one core over `seconds`}."""
    busiest = sorted(cpu.items(), key=lambda kv: -kv[1])[:k]
    return {name: round(v / seconds, 2) for name, v in busiest if v > 0}


def machine_busy():
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def cmd_move(dlq, staging, n, cmd):
    """Time CMD moving N messages from DLQ to STAGING; broker CPU from $BROKER_PID."""
    poll = float(os.environ.get("POLL_MS", "100")) / 1000
    timeout = float(os.environ.get("MOVE_TIMEOUT", "1800"))
    broker = os.environ.get("BROKER_PID")
    conn = connect()
    poller = Poller(conn)
    if poller.depth(dlq) != (n, 0) or poller.depth(staging) != (0, 0):
        raise SystemExit(f"mq.py: before the move {dlq} must hold {n} and {staging} 0")
    polls = 0
    poll_time = 0.0
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    broker0 = proc_cpu(broker)
    broker_threads0 = thread_cpu(broker)
    busy0, total0 = machine_busy()
    t0 = time.monotonic()
    out_file = open(os.environ["MOVE_STDOUT"], "w") if os.environ.get("MOVE_STDOUT") else None
    err_file = open(os.environ["MOVE_STDERR"], "w") if os.environ.get("MOVE_STDERR") else None
    proc = subprocess.Popen(cmd, stdout=out_file, stderr=err_file)
    mover_threads = {}  # the mover's threads: tid → (name, CPU s at the last poll that saw the thread)
    first_move = staged = done = exited = None
    d, s = n, 0
    while True:
        p0 = time.monotonic()
        d, consumers = poller.depth(dlq)
        s, _ = poller.depth(staging)
        now = time.monotonic()
        polls += 1
        poll_time += now - p0
        if first_move is None and (s > 0 or d < n):
            first_move = now
        if staged is None and s == n:
            staged = now
        if exited is None and proc.poll() is not None:
            exited = now
        if exited is None:
            # threads that ended (e.g. filter workers during shutdown) keep their last reading
            mover_threads.update(thread_cpu(proc.pid))
        # Done: staging holds N, and the DLQ has nothing ready and no consumer left, so nothing is
        # delivered-but-unacknowledged either (a closing consumer's unacked messages would be ready again).
        if d == 0 and consumers == 0 and s == n:
            done = now
            break
        if exited is not None and proc.returncode != 0:
            break
        if now - t0 > timeout:
            proc.terminate()
            break
        time.sleep(poll)
    broker1 = proc_cpu(broker)
    broker_threads1 = thread_cpu(broker)
    busy1, total1 = machine_busy()
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    rc = proc.wait()
    if exited is None:
        exited = time.monotonic()
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    conn.close()
    tick = os.sysconf("SC_CLK_TCK")
    mover_cpu = child.ru_utime + child.ru_stime
    poller_cpu = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
    broker_cpu = None if broker0 is None or broker1 is None else broker1 - broker0
    machine_cpu = (busy1 - busy0) / tick
    out = {
        "rc": rc,
        "done": done is not None,
        "seconds": None if done is None else done - t0,
        "first_move": None if first_move is None else first_move - t0,
        "staged": None if staged is None else staged - t0,
        "exit": exited - t0,
        "dlq": d,
        "staging": s,
        "polls": polls,
        "poll_ms_avg": 1000 * poll_time / max(polls, 1),
        # CPU seconds over the move (until done): the broker's, and the mover process's (whole run)
        "broker_cpu": broker_cpu,
        "mover_cpu": mover_cpu,
        "mover_maxrss_mib": child.ru_maxrss / 1024,
        "poller_cpu": poller_cpu,
        # CPU seconds the whole machine was busy over the move, and the share of all its cores
        "machine_cpu": machine_cpu,
        "machine_busy": (busy1 - busy0) / max(total1 - total0, 1),
        # busy CPU not accounted for by the broker, the mover and this poller: other processes on the machine
        "other_cpu": machine_cpu - mover_cpu - poller_cpu - (broker_cpu or 0),
        # busiest threads, as a share of one core over the move (the mover's: from its start to the last poll
        # before it exited; for a mover that exits at once, like rabbitmqctl, nearly empty)
        "mover_threads": top_threads(by_name(mover_threads), (exited or time.monotonic()) - t0),
        "broker_threads": top_threads(
            by_name({t: (n, c - broker_threads0.get(t, (n, 0.0))[1]) for t, (n, c) in broker_threads1.items()}),
            (done or time.monotonic()) - t0,
        ),
    }
    print(json.dumps(out))
    if done is None:
        sys.exit(1)


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
            print(f"mq.py idle: the machine is still {100 * busy:.0f} % busy after {timeout:.0f} s", file=sys.stderr)
            sys.exit(1)
    print(f"machine idle ({100 * busy:.0f} % busy)", file=sys.stderr)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    op, args = argv[1], argv[2:]
    if op == "reset":
        cmd_reset(args)
    elif op == "delete":
        cmd_reset(args, declare=False)
    elif op == "depth":
        cmd_depth(args)
    elif op == "fill":
        cmd_fill(args[0], int(args[1]), int(args[2]) if len(args) > 2 else 1024)
    elif op == "idle":
        cmd_idle(float(args[0]) / 100 if args else 0.1, float(args[1]) if len(args) > 1 else 600)
    elif op == "move":
        sep = args.index("--")
        dlq, staging, n = args[0], args[1], int(args[2])
        cmd_move(dlq, staging, n, args[sep + 1 :])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
