#!/usr/bin/env python3
"""Collect and print the pipeline benchmark's results (used by run.sh). Python stdlib only.

    analyze.py case NAME RESULTS --tool redrive|oneoff --n N --staging F --remainder F
               [--archive F] [--audit-dir D] [--chain-cost] [--meta DLQ.meta.json] [--label TEXT]
        After one measured run (RESULTS/NAME.json from measure.py, the tool's summary in RESULTS/NAME.stdout):
        count the output lines (reconciliation: replayed + remainder + discarded = N), the output sizes, compare
        the counts with what the generator's model expects, and with --chain-cost estimate the filter chain's own
        cost per message from the audit logs. Writes RESULTS/NAME.case.json.

    analyze.py table RESULTS [--repo DIR]
        The side-by-side table of every case, the chain cost, the ratios and the targets.
"""
import argparse
import glob
import json
import os
import re
import sys

MIB = 1024 * 1024
CHAIN = ["route-by-error", "repair-json", "drop-test-traffic"]
SAMPLE_LINES = 100_000


def count_lines(path):
    if not path or not os.path.exists(path):
        return None
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def size(path):
    return os.path.getsize(path) if path and os.path.exists(path) else None


def audit_sample(path, limit=SAMPLE_LINES):
    """Mean duration_us and fuel over the first `limit` records of a module's audit file (fuel: None when the
    records carry none, i.e. the run counted no fuel: no --fuel)."""
    dur = re.compile(rb'"duration_us":(\d+)')
    fuel = re.compile(rb'"fuel":(\d+)')
    n = total_us = total_fuel = fueled = 0
    with open(path, "rb") as f:
        for line in f:
            d, u = dur.search(line), fuel.search(line)
            if d:
                n += 1
                total_us += int(d.group(1))
                if u:
                    fueled += 1
                    total_fuel += int(u.group(1))
            if n >= limit:
                break
    return {"sampled": n, "mean_us": total_us / n if n else None, "mean_fuel": total_fuel / fueled if fueled else None}


def chain_cost(audit_dir, messages):
    """Per message: sum over modules of (records per message × mean duration of a record), from a sample."""
    modules, per_msg_us, per_msg_fuel = {}, 0.0, 0.0
    for name in CHAIN:
        path = os.path.join(audit_dir, f"{name}.jsonl")
        if not os.path.exists(path):
            continue
        lines = count_lines(path)
        sample = audit_sample(path)
        modules[name] = {"records": lines, "bytes": size(path), **sample}
        if sample["mean_us"] is not None and messages:
            per_msg_us += sample["mean_us"] * lines / messages
            if sample["mean_fuel"] is not None:
                per_msg_fuel += sample["mean_fuel"] * lines / messages
    return {"per_message_us": round(per_msg_us, 2), "per_message_fuel": round(per_msg_fuel),
            "sample_lines_per_module": SAMPLE_LINES, "modules": modules}


def engine_bench_figure(repo):
    """The 'wasm chain of 3' row of the engine benchmark: $ENGINE_CHAIN_US, else BENCHMARKS.md, else criterion's
    saved table (target/criterion/engine-summary.txt, written by `cargo bench --bench engine`)."""
    if os.environ.get("ENGINE_CHAIN_US"):
        us = float(os.environ["ENGINE_CHAIN_US"])
        return {"per_message_us": us, "source": "ENGINE_CHAIN_US", "line": f"ENGINE_CHAIN_US={us}"}
    row = re.compile(r"(wasm[- ]chain(?: of )?3|wasm-chain3)[^0-9\n]*?([0-9][0-9.,]*)\s*(ns|µs|us|ms)", re.I)
    for rel in ("BENCHMARKS.md", "target/criterion/engine-summary.txt"):
        path = os.path.join(repo, rel)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                m = row.search(line)
                if m:
                    value = float(m.group(2).replace(",", ""))
                    us = value / 1000 if m.group(3) == "ns" else value * 1000 if m.group(3) == "ms" else value
                    return {"per_message_us": us, "source": rel, "line": line.strip()}
    return None


def cmd_case(args):
    base = os.path.join(args.results, args.name)
    with open(base + ".json") as f:
        measured = json.load(f)
    summary = None
    try:
        with open(base + ".stdout") as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
        summary = json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        pass
    staging, remainder, archive = count_lines(args.staging), count_lines(args.remainder), count_lines(args.archive)
    case = {
        "name": args.name, "label": args.label or args.name, "tool": args.tool, "n": args.n,
        "workers": args.workers, "default": args.default,
        "measured": measured, "summary": summary,
        "lines": {"staging": staging, "remainder": remainder, "archive": archive},
        "bytes": {"staging": size(args.staging), "remainder": size(args.remainder), "archive": size(args.archive)},
    }
    if args.tool == "redrive" and summary:
        counts = summary["counts"]
        decided = sum(counts[k] for k in ("replayed", "skipped", "discarded", "failed", "parked"))
        case["decided"] = decided
        case["elapsed_secs"] = summary["elapsed_secs"]
        case["first_replay_secs"] = summary.get("first_replay_secs")
        case["verdicts"] = {"replay": counts["replayed"], "skip": counts["skipped"], "discard": counts["discarded"],
                            "other": decided - counts["replayed"] - counts["skipped"] - counts["discarded"]}
        if summary.get("stopped"):
            case["problem"] = f"the run stopped early: {summary['stopped']}"
        if args.audit_dir:
            case["audit"] = {os.path.basename(p): size(p) for p in sorted(glob.glob(os.path.join(args.audit_dir, "*")))}
    elif args.tool == "chain" and summary:
        summary = summary["summary"]
        case["summary"] = summary
        case["decided"] = summary["messages"]
        case["elapsed_secs"] = summary["us_per_message"] * summary["messages"] / 1e6
        case["us_per_message"] = summary["us_per_message"]
        case["first_replay_secs"] = None
        case["verdicts"] = {"replay": summary["replay"], "skip": summary["skip"], "discard": summary["discard"],
                            "other": summary["failed"] + summary["malformed_lines"]}
    elif args.tool == "oneoff" and summary:
        counts = summary["counts"]
        case["decided"] = summary["messages"]
        case["elapsed_secs"] = summary["elapsed_secs"]
        case["first_replay_secs"] = None
        case["verdicts"] = {"replay": counts.get("replay", 0), "skip": counts.get("skip", 0),
                            "discard": counts.get("discard", 0), "other": counts.get("malformed", 0)}
    if args.chain_cost and args.audit_dir:
        case["chain_cost"] = chain_cost(args.audit_dir, case.get("decided") or args.n)
    # Reconciliation: every message is in exactly one place at the end.
    parts = [x for x in (staging, remainder, archive) if x is not None]
    case["reconciled"] = sum(parts)
    problems = []
    if measured.get("exit_status") != 0:
        problems.append(f"exit status {measured.get('exit_status')}")
    if args.tool == "chain":
        case["reconciled"] = None  # writes no files
    elif case["reconciled"] != args.n:
        problems.append(f"replayed + remainder + discarded = {case['reconciled']}, not {args.n}")
    if summary is None:
        problems.append("no summary on stdout")
    if args.meta and case.get("verdicts"):
        with open(args.meta) as f:
            expected = json.load(f)["expected"]
        got = {k: case["verdicts"][k] for k in ("replay", "skip", "discard")}
        case["expected"] = expected
        if got != expected:
            problems.append(f"verdicts {got} differ from the model's {expected}")
        forwarded = args.tool == "redrive" and summary and summary.get("destination")
        if forwarded and (staging != got["replay"] or (archive or 0) != got["discard"]):
            problems.append(f"files disagree with the summary: staging {staging} lines for {got['replay']} "
                            f"replayed, archive {archive} lines for {got['discard']} discarded")
    if case.get("problem"):
        problems.append(case["problem"])
    case["problems"] = problems
    case["order"] = len(glob.glob(os.path.join(args.results, "*.case.json")))
    with open(base + ".case.json", "w") as f:
        json.dump(case, f, indent=2)
        f.write("\n")
    rss = measured.get("max_rss_kib")
    first = measured.get("first_byte_secs")
    print(f"{args.name}: {case.get('decided')} messages in {measured.get('wall_secs')} s (process), "
          f"peak RSS {rss / 1024 if rss else float('nan'):.1f} MiB"
          + (f", first byte in staging after {first} s" if first is not None else "")
          + (f"; PROBLEMS: {'; '.join(problems)}" if problems else
             "; verdicts as the model expects" if args.tool == "chain" else "; reconciled"))
    return 0 if not problems else 1


def cpu_us(case):
    m = case["measured"]
    n = case.get("decided") or case["n"]
    if m.get("user_secs") is None or m.get("sys_secs") is None or not n:
        return None
    return (m["user_secs"] + m["sys_secs"]) / n * 1e6


def fmt(value, spec):
    if value is None:
        width = re.match(r"\d*", spec).group()
        return "-".rjust(int(width) if width else 1)
    return format(value, spec)


def cmd_table(args):
    cases = []
    for path in glob.glob(os.path.join(args.results, "*.case.json")):
        with open(path) as f:
            cases.append(json.load(f))
    cases.sort(key=lambda c: c["order"])
    if not cases:
        sys.exit("analyze: no results")

    header = (f"{'tool':<44} {'messages':>9} {'seconds':>8} {'msg/s':>8} {'msg/s':>8} {'peak RSS':>9} "
              f"{'first replay':>12} {'first replay':>12} {'CPU':>6} {'CPU':>5}")
    sub = (f"{'':<44} {'':>9} {'(proc)':>8} {'(run)':>8} {'(proc)':>8} {'MiB':>9} "
           f"{'ms (proc)':>12} {'ms (run)':>12} {'µs/msg':>6} {'%':>5}")
    print(header)
    print(sub)
    print("-" * len(header))
    for c in cases:
        m = c["measured"]
        n = c.get("decided") or c["n"]
        wall, elapsed = m.get("wall_secs"), c.get("elapsed_secs")
        rss = m.get("max_rss_kib")
        first = m.get("first_byte_secs")
        run_first = c.get("first_replay_secs")
        print(f"{c['label']:<44} {n:>9} {fmt(wall, '8.2f')} {fmt(n / elapsed if elapsed else None, '8.0f')} "
              f"{fmt(n / wall if wall else None, '8.0f')} {fmt(rss / 1024 if rss else None, '9.1f')} "
              f"{fmt(first * 1000 if first is not None else None, '12.1f')} "
              f"{fmt(run_first * 1000 if run_first is not None else None, '12.1f')} "
              f"{fmt(cpu_us(c), '6.1f')} {fmt(m.get('cpu_percent'), '5d')}")
    print("""
  seconds (proc): the whole process, /usr/bin/time -v; msg/s (run): messages decided / the tool's own elapsed time
  (redrive: elapsed_secs of its summary, which starts after the modules are loaded and the DLQ is opened);
  first replay ms (proc): process start to the first byte in the staging file (polled every 0.5 ms);
  first replay ms (run): redrive's first_replay_secs (same clock as elapsed_secs);
  CPU µs/msg: user + sys CPU time of the whole process per message; CPU %: of one core, over the process's life.""")

    print("\nRSS during the run (VmRSS sampled every 0.25 s; MiB at 25 % / 50 % / 75 % / last sample):")
    for c in cases:
        at = c["measured"].get("rss_kib_at") or {}
        points = " / ".join(f"{at[k][1] / 1024:.1f}" for k in ("p25", "p50", "p75", "last") if k in at)
        print(f"  {c['label']:<44} {points or '-'}")

    engine = engine_bench_figure(args.repo)
    main = next((c for c in cases if c.get("chain_cost") and c.get("default")), None)
    print("\nFilter chain cost per message (the engine's own cost, no pipeline):")
    for case in (c for c in cases if c.get("chain_cost")):
        cc = case["chain_cost"]
        print(f"  from the audit logs of '{case['label']}' (this DLQ's mix; mean of the first "
              f"{cc['sample_lines_per_module']} records of each module × records per message):")
        for name, mod in cc["modules"].items():
            per = mod["records"] / (case.get("decided") or case["n"])
            print(f"    {name:<20} {mod['records']:>9} records ({per:.2f}/message), mean {mod['mean_us']:.2f} µs, "
                  "fuel not counted" if mod["mean_fuel"] is None else f"fuel {mod['mean_fuel']:.0f}")
        print(f"    chain, per message: {cc['per_message_us']:.2f} µs of wasm calls")
    print("    (duration_us: wall time of each call, truncated to whole µs; it excludes the host's sha256 of the body\n"
          "    and writing the audit record; on a loaded machine it includes time the thread was preempted)")
    if engine:
        print(f"  engine benchmark ({engine['source']}): {engine['per_message_us']:.1f} µs per message "
              f"(one valid order through all 3 modules, ChainRunner::decide incl. sha256)")
        print(f"    > {engine['line']}")
    else:
        print("  engine benchmark: no 'wasm chain of 3' figure found in BENCHMARKS.md or "
              "target/criterion/engine-summary.txt")

    chain_only = next((c for c in cases if c["tool"] == "chain" and c.get("us_per_message")), None)
    if chain_only:
        print(f"  redrive filter test on the N/10 DLQ (this mix, 1 thread, no pipeline): "
              f"{chain_only['us_per_message']:.1f} µs per message")
    print("\nPipeline vs chain cost (wall time per message in the pipeline ÷ chain cost per message):")
    for c in cases:
        if c["tool"] != "redrive" or not c.get("elapsed_secs"):
            continue
        n = c.get("decided") or c["n"]
        wall_us = c["elapsed_secs"] / n * 1e6
        workers = c.get("workers")
        parts = []
        for ref in (x for x in cases if x.get("chain_cost")):
            parts.append(f"{wall_us / ref['chain_cost']['per_message_us']:.2f}× '{ref['name']}' audit chain cost")
        if chain_only:
            parts.append(f"{wall_us / chain_only['us_per_message']:.2f}× filter test's")
        if engine:
            parts.append(f"{wall_us / engine['per_message_us']:.2f}× the engine benchmark's")
        print(f"  {c['label']:<44} {wall_us:7.2f} µs/message: " + ", ".join(parts))
    print("  (the workers run in parallel: with W workers on W free cores the ideal is 1/W of the chain cost)")

    print("\nReconciliation (lines: replayed + remainder + discarded = N):")
    ok = True
    for c in cases:
        l = c["lines"]
        if c["tool"] == "chain":
            status = "ok" if not c["problems"] else "PROBLEM: " + "; ".join(c["problems"])
            ok &= not c["problems"]
            print(f"  {c['label']:<44} (writes no files; verdicts as the model expects: {status})")
            continue
        parts = " + ".join(str(l[k] or 0) for k in ("staging", "remainder", "archive"))
        status = "ok" if not c["problems"] else "PROBLEM: " + "; ".join(c["problems"])
        ok &= not c["problems"]
        print(f"  {c['label']:<44} {parts} = {c['reconciled']} (N = {c['n']}): {status}")

    big = max((c for c in cases if c["tool"] == "redrive" and c.get("audit")), key=lambda c: c["n"], default=None)
    if big:
        print(f"\nOutput sizes of '{big['label']}' ({big['n']} messages; deleted after the run):")
        for name, b in big["audit"].items():
            if b is not None:
                print(f"  audit/{name:<40} {b / MIB:9.1f} MiB  ({b / big['n']:.0f} B/message)")
        for name in ("staging", "remainder"):
            b = big["bytes"][name]
            if b is not None:
                print(f"  {name:<46} {b / MIB:9.1f} MiB")

    print("\nTargets:")
    redrive = [c for c in cases if c["tool"] == "redrive" and c.get("default")]
    if redrive:
        large = max(redrive, key=lambda c: c["n"])
        small = min(redrive, key=lambda c: c["n"])
        rss_l, rss_s = large["measured"]["max_rss_kib"] / 1024, small["measured"]["max_rss_kib"] / 1024
        at = large["measured"].get("rss_kib_at") or {}
        growth = (at["last"][1] - at["p25"][1]) / 1024 if "last" in at and "p25" in at else None
        flat = growth is not None and growth <= 5
        print(f"  RSS ≤ 100 MiB:           peak {rss_l:.1f} MiB at {large['n']} messages ({rss_s:.1f} MiB at "
              f"{small['n']}) → {'met' if rss_l <= 100 else 'NOT met'}")
        print(f"  RSS not growing:         {'-' if growth is None else f'{growth:+.1f}'} MiB from 25 % of the "
              f"{large['n']}-message run to its end → {'met' if flat else 'NOT met' if growth is not None else '?'}"
              f" (a fresh run; a resumed run loads the ids of earlier runs, see README)")
        first = large["measured"].get("first_byte_secs")
        run_first = large.get("first_replay_secs")
        if first is not None:
            print(f"  first message < 100 ms:  {first * 1000:.0f} ms from process start "
                  f"({run_first * 1000 if run_first is not None else float('nan'):.0f} ms from the pipeline's start) → "
                  f"{'met' if first < 0.1 else 'NOT met'} from process start"
                  + (", met from the pipeline's start" if run_first is not None and run_first < 0.1 and first >= 0.1
                     else ""))
        n = large.get("decided") or large["n"]
        wall_us = large["elapsed_secs"] / n * 1e6
        refs = []
        if engine:
            refs.append(("the engine benchmark's wasm chain of 3", engine["per_message_us"]))
        if chain_only:
            refs.append(("redrive filter test on this mix", chain_only["us_per_message"]))
        if main:
            refs.append(("the audit logs' chain cost", main["chain_cost"]["per_message_us"]))
        for i, (what, us) in enumerate(refs):
            ratio = wall_us / us
            lead = "  throughput within 2× of the chain cost:" if i == 0 else "                                        "
            print(f"{lead} {wall_us:.1f} µs/message = {ratio:.2f}× {what} ({us:.1f} µs) → "
                  f"{'met' if ratio <= 2 else 'NOT met'}")
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    subs = parser.add_subparsers(dest="cmd", required=True)
    case = subs.add_parser("case")
    case.add_argument("name")
    case.add_argument("results")
    case.add_argument("--tool", choices=["redrive", "oneoff", "chain"], required=True)
    case.add_argument("--n", type=int, required=True)
    case.add_argument("--staging")
    case.add_argument("--remainder")
    case.add_argument("--archive")
    case.add_argument("--audit-dir")
    case.add_argument("--chain-cost", action="store_true")
    case.add_argument("--meta")
    case.add_argument("--label")
    case.add_argument("--workers", type=int)
    case.add_argument("--default", action="store_true", help="redrive with default settings (for the targets)")
    table = subs.add_parser("table")
    table.add_argument("results")
    table.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    args = parser.parse_args()
    return cmd_case(args) if args.cmd == "case" else cmd_table(args)


if __name__ == "__main__":
    sys.exit(main())
