#!/usr/bin/env python3
"""Start moto_server (the local SQS endpoint of the tests and benchmarks) with one race fixed.

Run it with the python of the moto venv that scripts/services.sh creates:

    /var/tmp/redrive-tools/moto-5.2.5/bin/python scripts/moto-server.py -H 127.0.0.1 -p 9324

moto 5.2.5 serves requests on threads, and Queue.delete_message rebuilds the queue's message list without
taking the queue's lock (add_message takes it). Two DeleteMessageBatch calls on one queue that overlap can
then put back messages the other call just deleted, while both report every entry as deleted: the
messages reappear after their visibility timeout. Real SQS has no such race, and redrive sends deletes
concurrently, so the endpoint the tests run against takes the lock around deletes too. Nothing else
changes. (Found by the SQS benchmark, bench/sqs.)
"""

from moto.sqs import models

_unlocked_delete = models.Queue.delete_message


def _locked_delete(queue, receipt_handle):
    with queue._messages_lock:
        return _unlocked_delete(queue, receipt_handle)


models.Queue.delete_message = _locked_delete

if __name__ == "__main__":
    from moto.server import main

    main()
