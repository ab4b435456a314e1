"""Helpers for bench/kafka/run.sh: make topics, fill a DLQ, the Python consume -> produce -> commit loop a team
would write, and the check that every message arrived exactly once, unchanged.

    kafka.py topics BROKERS NAME...           create topics (3 partitions each)
    kafka.py fill BROKERS TOPIC N SIZE        N records of SIZE bytes, key and `error` header each
    kafka.py loop BROKERS FROM TO GROUP       the Python mover (see cmd_loop)
    kafka.py pipe BROKERS FROM TO GROUP       the floor: consume and produce, no confirm per batch, no commit
    kafka.py check BROKERS TOPIC N SIZE       each of the N bodies exactly once, unchanged
"""

import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 3


def body(i, size):
    head = json.dumps({"order": i, "quantity": 2, "pad": ""})
    return head[:-2] + "x" * max(0, size - len(head)) + '"}'


def cmd_topics(brokers, *names):
    admin = AdminClient({"bootstrap.servers": brokers})
    for f in admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names]).values():
        f.result()


def cmd_fill(brokers, topic, n, size):
    n, size = int(n), int(size)
    p = Producer({"bootstrap.servers": brokers, "linger.ms": 20, "enable.idempotence": True, "acks": "all"})
    for i in range(n):
        while True:
            try:
                p.produce(topic, key=f"order-{i}", value=body(i, size),
                          headers=[("kafka_dlt-exception-message", b"timeout calling billing"),
                                   ("kafka_dlt-original-topic", b"orders")])
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(60)
    if left:
        sys.exit(f"fill: {left} records not confirmed")


def cmd_loop(brokers, source, dest, group):
    """Consume a batch, produce each record (key, value, headers), wait for the deliveries, commit the batch:
    at-least-once, the way the confluent-kafka docs show it. Ends when every partition reached its end."""
    c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True, "session.timeout.ms": 6000})
    p = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    c.subscribe([source])
    eof = set()
    assigned = None
    failed = []
    while True:
        msgs = c.consume(500, 1.0)
        sent = 0
        for m in msgs:
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                sys.exit(f"loop: {m.error()}")
            while True:
                try:
                    p.produce(dest, key=m.key(), value=m.value(), headers=m.headers(),
                              on_delivery=lambda err, _m: err and failed.append(err))
                    break
                except BufferError:
                    p.poll(0.05)
            sent += 1
        if sent:
            p.flush(60)
            if failed:
                sys.exit(f"loop: {len(failed)} deliveries failed: {failed[0]}")
            c.commit(asynchronous=False)
        if assigned is None and c.assignment():
            assigned = {tp.partition for tp in c.assignment()}
        if assigned and eof >= assigned:
            break
    c.close()


def cmd_pipe(brokers, source, dest, group):
    """What `kcat -C | kcat -P` does (Debian's kcat 1.7 cannot talk to tansu 0.6): read to the end, produce
    each record (key, value, headers) without waiting for confirmations, flush once at the end, commit
    nothing. No safety at all: the floor."""
    c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "enable.partition.eof": True, "session.timeout.ms": 6000})
    p = Producer({"bootstrap.servers": brokers, "linger.ms": 20})
    c.subscribe([source])
    eof = set()
    assigned = None
    while True:
        for m in c.consume(1000, 1.0):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                sys.exit(f"pipe: {m.error()}")
            while True:
                try:
                    p.produce(dest, key=m.key(), value=m.value(), headers=m.headers())
                    break
                except BufferError:
                    p.poll(0.05)
            p.poll(0)
        if assigned is None and c.assignment():
            assigned = {tp.partition for tp in c.assignment()}
        if assigned and eof >= assigned:
            break
    if p.flush(60):
        sys.exit("pipe: records not delivered")
    c.close()


def cmd_check(brokers, topic, n, size):
    n, size = int(n), int(size)
    c = Consumer({"bootstrap.servers": brokers, "group.id": "bench-check", "enable.partition.eof": True,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    seen = {}
    eof = set()
    deadline = time.time() + 300
    while len(eof) < PARTITIONS and time.time() < deadline:
        for m in c.consume(1000, 1.0):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                    continue
                sys.exit(f"check: {m.error()}")
            i = json.loads(m.value())["order"]
            if m.value().decode() != body(i, size):
                sys.exit(f"check: order {i} arrived changed")
            seen[i] = seen.get(i, 0) + 1
    dup = sum(1 for v in seen.values() if v > 1)
    missing = n - len(seen)
    if dup or missing:
        sys.exit(f"check: {missing} missing, {dup} arrived more than once")
    print(f"check: {n} of {n}, each once")


if __name__ == "__main__":
    {"topics": cmd_topics, "fill": cmd_fill, "loop": cmd_loop, "pipe": cmd_pipe, "check": cmd_check}[sys.argv[1]](*sys.argv[2:])
