#!/usr/bin/env python3
"""A TCP proxy that adds a fixed latency to every HTTP call: a local SQS endpoint that answers like a real region.

    delay_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS

Listens on 127.0.0.1:LISTEN_PORT (LISTEN_PORT 0: a free port) and forwards each connection to
TARGET_HOST:TARGET_PORT (bench/sqs/run.sh: the moto_server it starts). Prints "listening on 127.0.0.1:PORT" once
ready; exits cleanly (status 0) on SIGTERM or SIGINT.

What it models: moto_server on 127.0.0.1 answers an API call in well under a millisecond of network time, while a
client in the same AWS region as the queue (EC2 to SQS) waits ~20 ms per call (TLS already set up, keep-alive).
A mover that makes one call at a time is bound by that latency; one that keeps many calls in flight is not. With
DELAY_MS=20 the local figures show that difference, which the bare local endpoint hides.

How: the bytes are forwarded unchanged, in order. The first chunk of each response is held until DELAY_MS after it
arrived; the rest of that response follows it without further delay. A response starts at the first bytes from
the target after the client has sent something (HTTP/1.1 request then response, keep-alive or not; no pipelining,
and an "Expect: 100-continue" exchange would count as two calls). So each call pays DELAY_MS once, on top of
the target's own time, and calls on different connections are delayed independently (in parallel). When either
side closes, its half-close is passed on; when the target closes or either side fails, both are closed.
"""

import asyncio
import signal
import sys


async def pump(reader, writer, delay, state, is_response):
    """Copy reader to writer. Requests mark the connection as awaiting a response; the first chunk of a response
    is held until `delay` seconds after it arrived."""
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            if not is_response:
                state["awaiting_response"] = True
            elif state["awaiting_response"]:
                state["awaiting_response"] = False
                await asyncio.sleep(delay)  # the chunk has just arrived: hold it for `delay`
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof() and not writer.is_closing():
            writer.write_eof()  # pass the half-close on: a response still in flight reaches the client
        return not is_response  # the client's EOF leaves the other direction open; the target's ends the call
    except (ConnectionError, OSError):
        return False


async def handle(client_reader, client_writer, host, port, delay):
    try:
        target_reader, target_writer = await asyncio.open_connection(host, port)
    except OSError as e:
        print(f"delay_proxy: cannot connect to {host}:{port}: {e}", file=sys.stderr)
        client_writer.close()
        return
    state = {"awaiting_response": False}
    up = asyncio.ensure_future(pump(client_reader, target_writer, delay, state, False))
    down = asyncio.ensure_future(pump(target_reader, client_writer, delay, state, True))
    try:
        pending = {up, down}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            # the target closed or a side failed: close both (the other pump then sees EOF and ends)
            if not all(t.result() for t in done):
                client_writer.close()
                target_writer.close()
    finally:
        for t in (up, down):
            t.cancel()
        client_writer.close()
        target_writer.close()


async def main(argv):
    if len(argv) != 5:
        raise SystemExit(__doc__)
    listen_port, host, port, delay_ms = int(argv[1]), argv[2], int(argv[3]), float(argv[4])
    delay = delay_ms / 1000
    connections = set()

    async def on_connect(reader, writer):
        task = asyncio.current_task()
        connections.add(task)
        try:
            await handle(reader, writer, host, port, delay)
        except asyncio.CancelledError:
            writer.close()
        finally:
            connections.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", listen_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()
    for task in list(connections):
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
