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
  not replicated, and a 2-process prefork worker); with --nats as well, the
  submits against NATS JetStream's acknowledged publishes (`synod-bench
  nats`: a stream of 3 replicas on 3 servers, the same loops);
- vectors (when --hnswlib and --vectors-data are given): recall@10 and
  queries per second at each ef on a saved data set (`synod-bench
  embed-set`: real sentence embeddings), Synod (`synod-bench vectors
  --data`, once per --quantization) in process, over REST, gRPC and the
  batch endpoint, against hnswlib (bench/hnswlib_compare.py) per call and
  over the whole query matrix, on one thread.
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
# `synod-bench vectors` and bench/hnswlib_compare.py on the same data set.
SYNOD_QPS = re.compile(r"^(index|REST|gRPC|REST64|batch)\s+ef\s+(\d+): recall@10 ([\d.]+),\s+(\d+) QPS")
HNSWLIB_QPS = re.compile(r"^hnswlib (?:(matrix) )?ef\s+(\d+): recall@10 ([\d.]+),\s+(\d+) QPS")
NATS_PUB = re.compile(
    r"nats jetstream publishes: (\d+) clients, \d+ s: (\d+) acked publishes/s, p50 ([\d.]+) ms, p99 ([\d.]+) ms"
)
OVER_HEALTH = re.compile(r"small search over REST p50 (\d+) us, GET /health p50 (\d+) us")
INDEX_MEMORY = re.compile(r"index memory: (\d+) MiB estimated \((\d+) MiB per million vectors\)")
PAIRS = ("writes", "failover", "tasks", "vectors")


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


def vector_rows(synod_lines: List[str], peer_lines: List[str], label: str) -> List[Row]:
    """Per ef: recall, and each way of asking Synod against the hnswlib
    call it is the peer of (one query per call, or the whole matrix)."""
    mine: Dict[Tuple[str, int], Tuple[float, float]] = {}
    theirs: Dict[Tuple[str, int], Tuple[float, float]] = {}
    extra: List[Row] = []
    for line in synod_lines:
        line = line.strip()
        m = SYNOD_QPS.search(line)
        if m:
            mine[(m[1], int(m[2]))] = (float(m[3]), float(m[4]))
        m = OVER_HEALTH.search(line)
        if m:
            extra.append(Row("  tiny-collection search p50 above GET /health, us", f"{int(m[1]) - int(m[2])}", "-", "-", "-"))
        m = INDEX_MEMORY.search(line)
        if m:
            extra.append(Row("  index memory, MiB per million vectors", m[2], "-", "-", "-"))
    for line in peer_lines:
        m = HNSWLIB_QPS.search(line.strip())
        if m:
            theirs[(m[1] or "call", int(m[2]))] = (float(m[3]), float(m[4]))
    rows = []
    for ef in sorted({ef for _, ef in mine}):
        call, matrix = theirs.get(("call", ef)), theirs.get(("matrix", ef))
        if ("index", ef) in mine and call:
            rows.append(Row(f"{label} ef {ef}: recall@10", f"{mine[('index', ef)][0]:.4f}", "hnswlib", f"{call[0]:.4f}", "-"))
        for way, peer, what in (("index", call, "in process, per call"), ("REST", call, "REST, 1 connection"),
                                ("REST64", call, "REST base64, 1 connection"), ("gRPC", call, "gRPC, 1 connection"),
                                ("batch", matrix, "batch endpoint vs whole matrix")):
            if (way, ef) in mine and peer:
                a, b = mine[(way, ef)][1], peer[1]
                rows.append(Row(f"  QPS {what}", f"{a:,.0f}", "hnswlib", f"{b:,.0f}", ratio(a, b)))
    return rows + extra


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
    ap.add_argument("--nats", help="the nats-server binary (bench/peers/nats.sh prints one); with tasks, submits against JetStream")
    ap.add_argument("--hnswlib", help="a python with hnswlib (bench/peers/hnswlib.sh prints one); with --vectors-data, runs vectors")
    ap.add_argument("--vectors-data", help="a data set of synod-bench embed-set (or vectors --save): base.f32, queries.f32, truth.u32")
    ap.add_argument("--dim", type=int, default=384, help="the data set's dimension")
    ap.add_argument("--metric", default="cosine")
    ap.add_argument("--ef", default="16,32,64")
    ap.add_argument("--quantization", default="none,int8", help="Synod's runs of the vectors pair (none, int8 or both)")
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
    if "vectors" in only and not (args.hnswlib and args.vectors_data):
        if args.only:
            ap.error("vectors needs --hnswlib and --vectors-data")
        print("vectors: not run (no --hnswlib and --vectors-data)", flush=True)
        only.discard("vectors")

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
        if args.nats:
            nats = {}
            for line in run([args.bench, "nats", *s, "--nats", args.nats]):
                m = NATS_PUB.search(line)
                if m:
                    nats[int(m[1])] = (float(m[2]), float(m[3]), float(m[4]))
            for n in sorted(set(synod_t.submit) & set(nats)):
                a, b = synod_t.submit[n], nats[n]
                name = "NATS JetStream R3"
                rows.append(Row(f"task submits/s vs acked publishes, {clients(n)}", f"{a[0]:,.0f}", name, f"{b[0]:,.0f}", ratio(a[0], b[0])))
                rows.append(Row(f"  p50 ms, {clients(n)}", f"{a[1]:.2f}", name, f"{b[1]:.2f}", ratio(a[1], b[1], False)))
    if "vectors" in only:
        here = os.path.dirname(os.path.abspath(__file__))
        common = ["--dim", str(args.dim), "--metric", args.metric, "--ef", args.ef]
        peer = run([args.hnswlib, os.path.join(here, "hnswlib_compare.py"), args.vectors_data, *common])
        for q in [q for q in args.quantization.split(",") if q]:
            mine = run([args.bench, "vectors", "--data", args.vectors_data, "--quantization", q, *common])
            rows.extend(vector_rows(mine, peer, f"vectors ({q})"))

    print()
    print(f"machine: {machine()}; started {started}; load average before {load_before}, after {load()}")
    print("ratio: how many times better Synod is (above 1.00x) or worse (below)")
    if "tasks" in only:
        print("Synod: 3 nodes, each task committed through Raft and fsynced; "
              "Celery+Redis: one redis-server, no persistence, not replicated"
              + ("; NATS JetStream: 3 replicas, acknowledged by a quorum, no fsync per message" if args.nats else ""))
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
