"""Run a command; print wall seconds, CPU seconds (user + system, the command and everything it started) and
peak RSS in MiB of its largest process, and the CPU seconds the broker (pid BROKER_PID) used meanwhile.

    measure_move.py BROKER_PID -- COMMAND...

Shared by bench/kafka/run.sh and bench/redis/run.sh.
"""

import os
import resource
import subprocess
import sys
import time


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


broker = int(sys.argv[1])
command = sys.argv[sys.argv.index("--") + 1:]
before = resource.getrusage(resource.RUSAGE_CHILDREN)
broker_before = proc_cpu(broker)
start = time.monotonic()
code = subprocess.call(command)
wall = time.monotonic() - start
after = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(f"{code} {wall:.3f} {cpu:.3f} {after.ru_maxrss / 1024:.1f} {proc_cpu(broker) - broker_before:.3f}")
