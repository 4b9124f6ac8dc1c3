#!/usr/bin/env python3
"""`make bench-compare`: each Synod benchmark and its peer, back to back on
this machine, and one table of both absolutes and their ratio.

    python3 bench/compare.py --bench target/release/synod-bench --etcd "$(sh bench/peers/etcd.sh)"

Pairs run so far: replicated writes at 1 and 64 clients and leader
failover, Synod (`synod-bench writes`, `failover`) against etcd
(`synod-bench etcd`: 3 members on loopback, the same HTTP client and loops).
Every line each benchmark prints is shown as it comes; the table follows.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

WRITES = re.compile(
    r"writes through the leader: (\d+) clients, \d+ s: (\d+) committed writes/s, p50 ([\d.]+) ms, p99 ([\d.]+) ms"
)
FAILOVER = re.compile(r"failover: \d+ runs; .*p50 (\d+) ms, p99 (\d+) ms, max (\d+) ms")


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="the synod-bench binary (release)")
    ap.add_argument("--etcd", required=True, help="the etcd binary (bench/peers/etcd.sh prints one)")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", default="1,64")
    ap.add_argument("--runs", type=int, default=10, help="leader kills per side")
    args = ap.parse_args()

    started, load_before = time.strftime("%Y-%m-%d %H:%M:%S"), load()
    s = ["--clients", args.clients, "--seconds", str(args.seconds)]
    synod_w = writes(run([args.bench, "writes", *s]))
    etcd_lines = run([args.bench, "etcd", *s, "--runs", str(args.runs), "--etcd", args.etcd])
    etcd_w, etcd_f = writes(etcd_lines), failover(etcd_lines)
    synod_f = failover(run([args.bench, "failover", "--runs", str(args.runs)]))

    rows = []
    for n in sorted(set(synod_w) | set(etcd_w)):
        a, b = synod_w.get(n, (0, 0, 0)), etcd_w.get(n, (0, 0, 0))
        rows.append((f"replicated writes/s, {n} client{'s' if n > 1 else ''}", f"{a[0]:,.0f}", f"{b[0]:,.0f}", ratio(a[0], b[0])))
        rows.append((f"  write p50 ms, {n} client{'s' if n > 1 else ''}", f"{a[1]:.2f}", f"{b[1]:.2f}", ratio(a[1], b[1], False)))
        rows.append((f"  write p99 ms, {n} client{'s' if n > 1 else ''}", f"{a[2]:.2f}", f"{b[2]:.2f}", ratio(a[2], b[2], False)))
    if synod_f and etcd_f:
        rows.append(("leader kill -> next write, p50 ms", f"{synod_f[0]:.0f}", f"{etcd_f[0]:.0f}", ratio(synod_f[0], etcd_f[0], False)))
        rows.append(("leader kill -> next write, max ms", f"{synod_f[2]:.0f}", f"{etcd_f[2]:.0f}", ratio(synod_f[2], etcd_f[2], False)))

    print()
    print(f"machine: {machine()}; started {started}; load average before {load_before}, after {load()}")
    print("ratio: how many times better Synod is (above 1.00x) or worse (below)")
    width = max(len(r[0]) for r in rows)
    print(f"| {'what':<{width}} | {'Synod':>10} | {'etcd':>10} | {'ratio':>7} |")
    print(f"|{'-' * (width + 2)}|{'-' * 12}|{'-' * 12}|{'-' * 9}|")
    for r in rows:
        print(f"| {r[0]:<{width}} | {r[1]:>10} | {r[2]:>10} | {r[3]:>7} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
