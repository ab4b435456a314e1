#!/usr/bin/env python3
"""The fleet benchmark's helpers (bench/fleet/run.sh), with boto3 against $SQS_ENDPOINT.

    fleet.py proxy LISTEN_PORT TARGET_PORT DELAY_MS
        A TCP proxy on 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT that holds every chunk a client sends for
        DELAY_MS before passing it on (answers go back at once): each API call then takes DELAY_MS more, as a
        real region's round trip does, while the calls in flight overlap as they would.
    fleet.py launch K LOG_DIR -- CMD...
        Start K copies of CMD at once (the placeholder @I@ in CMD becomes the copy's number, 0..K-1), wait for
        all, and print one JSON line: wall seconds, the copies' CPU seconds (user + system), their exit codes,
        the moto_server's CPU seconds ($MOTO_PID) and the most resident memory of one copy. Each copy's stdout
        and stderr go to LOG_DIR/I.out and LOG_DIR/I.err.
    fleet.py times QUEUE N
        Receive the N messages of QUEUE (without deleting them; visible again afterwards) and print their
        SentTimestamps as one JSON line: the rate from the first to the last, and between the 10th and the 90th
        percentile.
    fleet.py table ROWS N MACHINE DELAY_MS RATE
        The rows run.sh collected, as a Markdown table.
"""

import asyncio
import json
import os
import resource
import subprocess
import sys
import time

import boto3

ENDPOINT = os.environ.get("SQS_ENDPOINT", "http://127.0.0.1:9324")


def proxy(listen_port, target_port, delay_ms):
    delay = delay_ms / 1000.0

    async def pump(reader, writer, hold):
        # Each chunk leaves `hold` seconds after it arrived; chunks keep their order.
        queue = asyncio.Queue()

        async def sender():
            while True:
                item = await queue.get()
                if item is None:
                    break
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        task = asyncio.create_task(sender())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                queue.put_nowait((time.monotonic() + hold, data))
        except ConnectionError:
            pass
        queue.put_nowait(None)
        try:
            await task
        except ConnectionError:
            pass

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, server_writer, delay),
            pump(server_reader, client_writer, 0.0),
        )

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def proc_cpu(pid):
    """CPU seconds (user + system) of process `pid` so far, or None."""
    if not pid:
        return None
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def launch(k, log_dir, cmd):
    os.makedirs(log_dir, exist_ok=True)
    moto_pid = os.environ.get("MOTO_PID")
    moto0 = proc_cpu(moto_pid)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    procs = []
    for i in range(k):
        argv = [a.replace("@I@", str(i)) for a in cmd]
        procs.append(
            subprocess.Popen(
                argv,
                stdout=open(f"{log_dir}/{i}.out", "w"),
                stderr=open(f"{log_dir}/{i}.err", "w"),
                stdin=subprocess.DEVNULL,
            )
        )
    codes = [p.wait() for p in procs]
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    moto1 = proc_cpu(moto_pid)
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                "codes": codes,
                "moto_cpu": None if moto0 is None or moto1 is None else moto1 - moto0,
                "max_rss_mib": after.ru_maxrss / 1024,
            }
        )
    )


def times(name, n):
    sqs = boto3.client("sqs", endpoint_url=ENDPOINT, region_name=os.environ.get("AWS_REGION", "us-east-1"))
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    stamps = []
    handles = []
    empty = 0
    while empty < 2 and len(stamps) < n:
        r = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=600,
            AttributeNames=["SentTimestamp"],
        )
        msgs = r.get("Messages", [])
        if not msgs:
            empty += 1
            continue
        empty = 0
        stamps.extend(int(m["Attributes"]["SentTimestamp"]) for m in msgs)
        handles.extend(m["ReceiptHandle"] for m in msgs)
    # Visible again, for the check that follows.
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0}
            for i, h in enumerate(handles[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
    stamps.sort()
    if len(stamps) < 20:
        raise SystemExit(f"fleet.py times: only {len(stamps)} messages in {name}")
    lo, hi = stamps[len(stamps) // 10], stamps[len(stamps) * 9 // 10]
    print(
        json.dumps(
            {
                "received": len(stamps),
                "rate_all": (len(stamps) - 1) / max((stamps[-1] - stamps[0]) / 1000.0, 1e-3),
                "rate_10_90": (len(stamps) * 9 // 10 - len(stamps) // 10) / max((hi - lo) / 1000.0, 1e-3),
            }
        )
    )


def table(rows_file, n, machine, delay, rate):
    """The results as a Markdown table, with the ratios and the rate limit's error."""
    rows = [json.loads(line) for line in open(rows_file)]
    loops = {r["k"]: r for r in rows if r["label"].startswith("boto3")}

    def speed(r):
        return r["times"]["rate_all"]

    def ratio(r, other):
        if other is None or other is r or "--rate" in r["label"]:
            return "–"
        return f"{speed(r) / speed(other):.2f}×"

    print(f"N = {n} messages of 1 KiB; SQS = moto 5.2.5 + {delay} ms per call; {machine}")
    print()
    print(
        "| mover | msg/s (SQS clock) | wall s | vs 1 batched loop | vs as many loops | CPU µs/msg (movers) | "
        "moto CPU s | max RSS MiB (one mover) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        moto = r["run"]["moto_cpu"]
        print(
            f"| {r['label']} | {speed(r):,.1f} | {r['run']['wall']:.1f} | {ratio(r, loops.get(1))} | "
            f"{ratio(r, loops.get(r['k']))} | {1e6 * r['run']['cpu'] / n:,.0f} | "
            f"{'–' if moto is None else f'{moto:.1f}'} | {r['run']['max_rss_mib']:.0f} |"
        )
    for r in rows:
        if "--rate" in r["label"] and rate:
            got = r["times"]["rate_10_90"]
            print()
            print(
                f"Rate limit: {r['label']}: {got:.1f} msg/s between the 10th and the 90th percentile of "
                f"SentTimestamp, {100 * (got / float(rate) - 1):+.1f} % from --rate {rate}/s (target: within 5 %)."
            )
    print()
    print(
        "msg/s: N over the span of the staging messages' SentTimestamp (SQS's clock, first to last). wall: from "
        "starting the movers until the last one exited (redrive ends a pass after an empty 2 s long poll, the loops "
        "after an empty 1 s receive). CPU: user + system of all movers together, per message. max RSS: the largest "
        "of any mover started so far."
    )


if __name__ == "__main__":
    verb, args = sys.argv[1], sys.argv[2:]
    if verb == "proxy":
        proxy(int(args[0]), int(args[1]), float(args[2]))
    elif verb == "launch":
        if "--" not in args:
            raise SystemExit("fleet.py launch K LOG_DIR -- CMD...")
        cut = args.index("--")
        launch(int(args[0]), args[1], args[cut + 1 :])
    elif verb == "times":
        times(args[0], int(args[1]))
    elif verb == "table":
        table(args[0], int(args[1]), args[2], args[3], args[4])
    else:
        raise SystemExit(__doc__)
