#!/usr/bin/env python3
"""Start moto_server (the local SQS endpoint of the tests and benchmarks) with one race and two slow paths fixed.

Run it with the python of the moto venv that scripts/services.sh creates:

    /var/tmp/redrive-tools/moto-5.2.5/bin/python scripts/moto-server.py -H 127.0.0.1 -p 9324

What changes, and why (moto 5.2.5; nothing else is touched):

1. A race. moto serves requests on threads, and Queue.delete_message rebuilds the queue's message list
   without taking the queue's lock (add_message takes it). Two DeleteMessageBatch calls on one queue that
   overlap can then put back messages the other call just deleted, while both report every entry as
   deleted: the messages reappear after their visibility timeout. Real SQS has no such race, and redrive
   sends deletes concurrently, so deletes take the lock here. (Found by the SQS benchmark, bench/sqs.)

2. Cost per received message grows with the queue's depth. ReceiveMessage checks the retention period of
   each message it returns by computing *all* of the queue's attributes, three times; the approximate
   counts among them walk every message in the queue, reading the clock through datetime arithmetic for
   each. Receiving 10 messages from a queue of 1 000 cost moto ~0.5 s of CPU, so every client, whatever it
   did, moved ~10 msg/s (bench/sqs, BENCHMARKS.md "## SQS"). Here the retention check reads the one
   attribute it needs, and the clock is read with time.time() (the same value, without the datetime
   round trip). The counts are still computed by walking the queue, as moto does.
"""

import time

from moto.sqs import models

_unlocked_delete = models.Queue.delete_message


def _locked_delete(queue, receipt_handle):
    with queue._messages_lock:
        return _unlocked_delete(queue, receipt_handle)


def _unix_time(dt=None):
    return time.time() if dt is None else _moto_unix_time(dt)


def _unix_time_millis(dt=None):
    return time.time() * 1000.0 if dt is None else _moto_unix_time(dt) * 1000.0


def _within_retention(backend, queue_name, message):
    queue = backend.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > time.time()


_moto_unix_time = models.unix_time
models.Queue.delete_message = _locked_delete
models.unix_time = _unix_time
models.unix_time_millis = _unix_time_millis
models.SQSBackend.is_message_valid_based_on_retention_period = _within_retention

if __name__ == "__main__":
    from moto.server import main

    main()
