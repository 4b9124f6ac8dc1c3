#!/usr/bin/env python3
"""`make bench-compare`: each Synod benchmark and its peer, back to back on
this machine, and one table of both absolutes and their ratio.

    python3 bench/compare.py --bench target/release/synod-bench --etcd "$(sh bench/peers/etcd.sh)" \\
        --celery "$(sh bench/peers/celery.sh)" --redis "$(sh bench/peers/redis.sh)"

Pairs run so far:
- writes, failover: replicated writes at 1 and 64 clients and leader
  failover, Synod (`synod-bench writes`, `failover`) against etcd
  (`synod-bench etcd`: 3 members on loopback, the same HTTP client and loops);
- tasks (when --celery and --redis are given): task submits at 1 and 64
  clients, submit-and-wait at 8 clients, and 10,000 tasks to completion,
  Synod (`synod-bench tasks`) against Celery with Redis as broker and result
  backend (bench/peers/celery_bench.py: one redis-server, no persistence,
  not replicated, and a 2-process prefork worker).
Every line each benchmark prints is shown as it comes; the table follows.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

WRITES = re.compile(
    r"writes through the leader: (\d+) clients, \d+ s: (\d+) committed writes/s, p50 ([\d.]+) ms, p99 ([\d.]+) ms"
)
FAILOVER = re.compile(r"failover: \d+ runs; .*p50 (\d+) ms, p99 (\d+) ms, max (\d+) ms")
# `synod-bench tasks` and bench/peers/celery_bench.py print these in the same words.
TASK_SUBMIT = re.compile(
    r"tasks submit: (\d+) clients: (\d+) submits/s, p50 ([\d.]+) ms, p99 ([\d.]+) ms, (\d+) errors"
)
TASK_E2E = re.compile(
    r"tasks end to end \((\d+) clients, submit \+ wait\): (\d+) tasks/s, p50 ([\d.]+) ms, p99 ([\d.]+) ms, (\d+) errors"
)
TASK_DONE = re.compile(
    r"tasks completed: (\d+) trivial tasks \(submitted in batches of \d+ in ([\d.]+) s\) "
    r"all succeeded after ([\d.]+) s: (\d+) tasks/s"
)
PAIRS = ("writes", "failover", "tasks")


class Row(NamedTuple):
    what: str
    synod: str
    peer: str
    theirs: str
    ratio: str


def run(cmd: List[str]) -> List[str]:
    print("$ " + " ".join(cmd), flush=True)
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None
        for line in p.stdout:
            print("  " + line.rstrip(), flush=True)
            lines.append(line)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode})")
    return lines


def writes(lines: List[str]) -> Dict[int, Tuple[float, float, float]]:
    out = {}
    for line in lines:
        m = WRITES.search(line)
        if m:
            out[int(m[1])] = (float(m[2]), float(m[3]), float(m[4]))
    return out


def failover(lines: List[str]) -> Optional[Tuple[float, float, float]]:
    for line in lines:
        m = FAILOVER.search(line)
        if m:
            return (float(m[1]), float(m[2]), float(m[3]))
    return None


class Tasks(NamedTuple):
    # clients -> (per s, p50 ms, p99 ms, errors)
    submit: Dict[int, Tuple[float, float, float, int]]
    e2e: Dict[int, Tuple[float, float, float, int]]
    # (tasks, s to submit, s to all succeeded, tasks/s)
    done: Optional[Tuple[int, float, float, float]]


def tasks(lines: List[str]) -> Tasks:
    t = Tasks({}, {}, None)
    for line in lines:
        for regex, out in ((TASK_SUBMIT, t.submit), (TASK_E2E, t.e2e)):
            m = regex.search(line)
            if m:
                out[int(m[1])] = (float(m[2]), float(m[3]), float(m[4]), int(m[5]))
        m = TASK_DONE.search(line)
        if m:
            t = t._replace(done=(int(m[1]), float(m[2]), float(m[3]), float(m[4])))
    return t


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
        with open("/proc/meminfo") as f:
            mem = int(next(l.split()[1] for l in f if l.startswith("MemTotal"))) / 2**20
    except OSError:
        mem = 0
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ratio(a: float, b: float, higher_is_better: bool = True) -> str:
    if not a or not b:
        return "-"
    return f"{(a / b if higher_is_better else b / a):.2f}x"


def clients(n: int) -> str:
    return f"{n} client{'s' if n > 1 else ''}"


def task_rows(synod: Tasks, peer: Tasks, name: str) -> List[Row]:
    rows = []
    zero = (0.0, 0.0, 0.0, 0)
    for n in sorted(set(synod.submit) | set(peer.submit)):
        a, b = synod.submit.get(n, zero), peer.submit.get(n, zero)
        rows.append(Row(f"task submits/s, {clients(n)}", f"{a[0]:,.0f}", name, f"{b[0]:,.0f}", ratio(a[0], b[0])))
        rows.append(Row(f"  submit p50 ms, {clients(n)}", f"{a[1]:.2f}", name, f"{b[1]:.2f}", ratio(a[1], b[1], False)))
        rows.append(Row(f"  submit p99 ms, {clients(n)}", f"{a[2]:.2f}", name, f"{b[2]:.2f}", ratio(a[2], b[2], False)))
        if a[3] or b[3]:
            rows.append(Row(f"  submit errors, {clients(n)}", f"{a[3]}", name, f"{b[3]}", "-"))
    for n in sorted(set(synod.e2e) | set(peer.e2e)):
        a, b = synod.e2e.get(n, zero), peer.e2e.get(n, zero)
        what = f"{clients(n)}, submit + wait"
        rows.append(Row(f"tasks/s end to end, {what}", f"{a[0]:,.0f}", name, f"{b[0]:,.0f}", ratio(a[0], b[0])))
        rows.append(Row(f"  end to end p50 ms, {what}", f"{a[1]:.2f}", name, f"{b[1]:.2f}", ratio(a[1], b[1], False)))
        rows.append(Row(f"  end to end p99 ms, {what}", f"{a[2]:.2f}", name, f"{b[2]:.2f}", ratio(a[2], b[2], False)))
        if a[3] or b[3]:
            rows.append(Row(f"  end to end errors, {what}", f"{a[3]}", name, f"{b[3]}", "-"))
    if synod.done and peer.done:
        a, b = synod.done, peer.done
        rows.append(Row(f"{a[0]:,} tasks submitted -> all succeeded, tasks/s", f"{a[3]:,.0f}", name, f"{b[3]:,.0f}", ratio(a[3], b[3])))
        rows.append(Row("  of which submitting them, s", f"{a[1]:.2f}", name, f"{b[1]:.2f}", ratio(a[1], b[1], False)))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="the synod-bench binary (release)")
    ap.add_argument("--etcd", help="the etcd binary (bench/peers/etcd.sh prints one); needed for writes and failover")
    ap.add_argument("--celery", help="a python with Celery (bench/peers/celery.sh prints one); with --redis, runs tasks")
    ap.add_argument("--redis", help="the redis-server binary (bench/peers/redis.sh prints one)")
    ap.add_argument("--only", help=f"the pairs to run, comma-separated, of {','.join(PAIRS)} (default: all)")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", default="1,64")
    ap.add_argument("--runs", type=int, default=10, help="leader kills per side")
    args = ap.parse_args()
    only = {p.strip() for p in (args.only or ",".join(PAIRS)).split(",") if p.strip()}
    if only - set(PAIRS):
        ap.error(f"--only: unknown {','.join(sorted(only - set(PAIRS)))} (choose from {','.join(PAIRS)})")
    if only & {"writes", "failover"} and not args.etcd:
        ap.error("writes and failover need --etcd (or pass --only tasks)")
    if bool(args.celery) != bool(args.redis):
        ap.error("--celery and --redis go together")
    if "tasks" in only and not args.celery:
        if args.only:
            ap.error("tasks needs --celery and --redis")
        # All pairs by default, but without its peer the tasks pair is left
        # out: writes and failover as before there was one.
        print("tasks: not run (no --celery and --redis)", flush=True)
        only.discard("tasks")

    started, load_before = time.strftime("%Y-%m-%d %H:%M:%S"), load()
    s = ["--clients", args.clients, "--seconds", str(args.seconds)]
    rows: List[Row] = []
    if only & {"writes", "failover"}:
        synod_w = writes(run([args.bench, "writes", *s])) if "writes" in only else {}
        # `synod-bench etcd` times writes and then failover in one cluster:
        # no leader kills when failover is not asked for, and when writes
        # are not, the least load it can be given (1 client for 0 s, not read).
        etcd_s = s if "writes" in only else ["--clients", "1", "--seconds", "0"]
        runs = args.runs if "failover" in only else 0
        etcd_lines = run([args.bench, "etcd", *etcd_s, "--runs", str(runs), "--etcd", args.etcd])
        etcd_w = writes(etcd_lines) if "writes" in only else {}
        etcd_f = failover(etcd_lines)
        synod_f = failover(run([args.bench, "failover", "--runs", str(args.runs)])) if "failover" in only else None
        for n in sorted(set(synod_w) | set(etcd_w)):
            a, b = synod_w.get(n, (0, 0, 0)), etcd_w.get(n, (0, 0, 0))
            rows.append(Row(f"replicated writes/s, {clients(n)}", f"{a[0]:,.0f}", "etcd", f"{b[0]:,.0f}", ratio(a[0], b[0])))
            rows.append(Row(f"  write p50 ms, {clients(n)}", f"{a[1]:.2f}", "etcd", f"{b[1]:.2f}", ratio(a[1], b[1], False)))
            rows.append(Row(f"  write p99 ms, {clients(n)}", f"{a[2]:.2f}", "etcd", f"{b[2]:.2f}", ratio(a[2], b[2], False)))
        if synod_f and etcd_f:
            rows.append(Row("leader kill -> next write, p50 ms", f"{synod_f[0]:.0f}", "etcd", f"{etcd_f[0]:.0f}", ratio(synod_f[0], etcd_f[0], False)))
            rows.append(Row("leader kill -> next write, max ms", f"{synod_f[2]:.0f}", "etcd", f"{etcd_f[2]:.0f}", ratio(synod_f[2], etcd_f[2], False)))
    if "tasks" in only:
        synod_t = tasks(run([args.bench, "tasks", *s]))
        here = os.path.dirname(os.path.abspath(__file__))
        peer_t = tasks(run([args.celery, os.path.join(here, "peers", "celery_bench.py"), "--redis", args.redis, *s]))
        rows.extend(task_rows(synod_t, peer_t, "Celery+Redis"))

    print()
    print(f"machine: {machine()}; started {started}; load average before {load_before}, after {load()}")
    print("ratio: how many times better Synod is (above 1.00x) or worse (below)")
    if "tasks" in only:
        print("Synod: 3 nodes, each task committed through Raft and fsynced; "
              "Celery+Redis: one redis-server, no persistence, not replicated")
    if not rows:
        print("no results")
        return 1
    width = max(len(r.what) for r in rows)
    pw = max(len("peer"), *(len(r.peer) for r in rows))
    print(f"| {'what':<{width}} | {'Synod':>10} | {'peer':<{pw}} | {'peer value':>10} | {'ratio':>7} |")
    print(f"|{'-' * (width + 2)}|{'-' * 12}|{'-' * (pw + 2)}|{'-' * 12}|{'-' * 9}|")
    for r in rows:
        print(f"| {r.what:<{width}} | {r.synod:>10} | {r.peer:<{pw}} | {r.theirs:>10} | {r.ratio:>7} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
