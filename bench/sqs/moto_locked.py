#!/usr/bin/env python3
"""moto_server with one fix: SQS deletes hold the queue's lock. Run with the python of a moto venv:

    /var/tmp/redrive-tools/moto-5.2.5/bin/python bench/sqs/moto_locked.py -H 127.0.0.1 -p 9325

Why: moto 5.2.5's Queue.delete_message removes a message by rebuilding the queue's message list
(`self._messages = [m for m in self._messages if ...]`) without a lock, while the server handles requests in
threads. When two DeleteMessageBatch calls on one queue overlap (a thread switch in the middle of the rebuild),
the later assignment puts back messages the other call had just deleted: the calls report every entry
Successful, yet the messages stay in the queue (invisible until their visibility timeout ends), and a later
delete with the same receipt handle is a silent no-op. A mover that sends several DeleteMessageBatch calls
at once (redrive does) then leaves messages in the DLQ on moto, never on SQS. add_message already takes
`_messages_lock`; this takes the same lock around delete_message. Nothing else is changed.
"""

import sys

from moto.sqs import models

_delete_message = models.Queue.delete_message


def delete_message(self, receipt_handle):
    with self._messages_lock:
        return _delete_message(self, receipt_handle)


models.Queue.delete_message = delete_message

from moto.server import main  # noqa: E402  (after the patch)

if __name__ == "__main__":
    main(sys.argv[1:])
