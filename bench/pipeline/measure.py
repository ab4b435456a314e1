#!/usr/bin/env python3
"""Run one command under /usr/bin/time -v and measure it: measure.py RESULT.json --watch FILE -- COMMAND...

- wall time, user/sys CPU, peak RSS (Maximum resident set size), exit status, from `/usr/bin/time -v`;
- the time from starting the process to the first byte in --watch FILE (the staging file: the first forwarded
  message), polled every 0.5 ms for the first 3 s, then every 10 ms;
- the command's resident set size sampled every 0.25 s (VmRSS of the process /usr/bin/time runs), to show
  whether it grows during the run: all samples, and the ones at 25 %, 50 %, 75 % of the run and the last one.

The command's stdout goes to RESULT.stdout, its stderr to RESULT.stderr. Writes RESULT.json. Python stdlib only.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time


def child_pid(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
        return int(kids[0]) if kids else None
    except OSError:
        return None


def vm_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def parse_time_v(text):
    fields = {}
    for line in text.splitlines():
        key, _, value = line.strip().rpartition(": ")
        fields[key] = value
    def num(key, cast=float):
        try:
            return cast(fields[key].rstrip("%"))
        except (KeyError, ValueError):
            return None
    wall = fields.get("Elapsed (wall clock) time (h:mm:ss or m:ss)")
    wall_secs = None
    if wall:
        parts = [float(p) for p in wall.split(":")]
        wall_secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    return {
        "wall_secs": wall_secs,
        "user_secs": num("User time (seconds)"),
        "sys_secs": num("System time (seconds)"),
        "cpu_percent": num("Percent of CPU this job got", int),
        "max_rss_kib": num("Maximum resident set size (kbytes)", int),
        "fs_outputs": num("File system outputs", int),
        "voluntary_ctx_switches": num("Voluntary context switches", int),
        "involuntary_ctx_switches": num("Involuntary context switches", int),
        "exit_status": num("Exit status", int),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("result", help="RESULT.json to write (RESULT.stdout, RESULT.stderr next to it)")
    parser.add_argument("--watch", help="file whose first byte marks the first forwarded message")
    argv = sys.argv[1:]
    if "--" not in argv:
        parser.error("usage: measure.py RESULT.json [--watch FILE] -- COMMAND...")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1:]
    if not command:
        parser.error("no command")
    base = args.result[:-5] if args.result.endswith(".json") else args.result
    time_file = base + ".time"

    with open(base + ".stdout", "wb") as out, open(base + ".stderr", "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen(["/usr/bin/time", "-v", "-o", time_file, *command], stdout=out, stderr=err)
        first, samples, target, next_sample = None, [], None, started
        while proc.poll() is None:
            now = time.monotonic()
            if first is None and args.watch:
                try:
                    if os.stat(args.watch).st_size > 0:
                        first = now - started
                except FileNotFoundError:
                    pass
            if now >= next_sample:
                target = target or child_pid(proc.pid)
                rss = vm_rss_kib(target) if target else None
                if rss is not None:
                    samples.append((round(now - started, 3), rss))
                next_sample = now + 0.25
            time.sleep(0.0005 if first is None and now - started < 3 else 0.01)
        ended = time.monotonic()
    try:
        with open(time_file) as f:
            measured = parse_time_v(f.read())
    except OSError:
        measured = parse_time_v("")
    if measured["exit_status"] is None:
        measured["exit_status"] = proc.returncode
    picks = {}
    if samples:
        for label, q in (("p25", 0.25), ("p50", 0.5), ("p75", 0.75)):
            picks[label] = samples[min(len(samples) - 1, int(len(samples) * q))]
        picks["last"] = samples[-1]
    result = {
        "command": command,
        "first_byte_secs": None if first is None else round(first, 4),
        "outer_wall_secs": round(ended - started, 3),
        **measured,
        "rss_samples": len(samples),
        "rss_kib_at": picks,
        "rss_kib_sampled_max": max((s[1] for s in samples), default=None),
        "rss_series": [[t, kib] for t, kib in samples],
    }
    with open(args.result, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    sys.exit(0 if result["exit_status"] == 0 else 1)


if __name__ == "__main__":
    main()
