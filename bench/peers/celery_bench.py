#!/usr/bin/env python3
"""The Celery + Redis peer of `synod-bench tasks`, for bench/compare.py.

    "$(sh bench/peers/celery.sh)" bench/peers/celery_bench.py --redis "$(sh bench/peers/redis.sh)"

Starts its own redis-server on a free loopback port (the broker in db 0,
the result backend in db 1) and one Celery worker (prefork pool, 2
processes: this is sized for the 2-core bench machine), then times what
`synod-bench tasks` times and prints each result in the same words, so one
regex reads both:

    tasks submit: N clients: X submits/s, p50 A ms, p99 B ms, E errors
    tasks end to end (8 clients, submit + wait): X tasks/s, p50 A ms, p99 B ms, E errors
    tasks completed: 10000 trivial tasks (submitted in batches of 100 in S s) all succeeded after T s: X tasks/s

Not the same guarantees: Redis here is one process with persistence off
(`--save "" --appendonly no`), not replicated, nothing fsynced, and Celery
acknowledges a task when the worker starts it (the default, acks_late off),
so a task on a killed worker is lost; Synod is three nodes that commit each
submit through Raft, fsynced, and runs a lost worker's tasks elsewhere. The
lines say so. It must run with the python bench/peers/celery.sh prints.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, List, Optional, Tuple

try:
    import celery
    import redis
    from celery import Celery, group
except ImportError:
    sys.exit("celery_bench.py: no celery here; run it with the python `sh bench/peers/celery.sh` prints")

# Set by main() for the worker it starts, which imports this file as the
# module `celery_bench` and so gets the same app and task.
URL = os.environ.get("CELERY_BENCH_REDIS", "redis://127.0.0.1:6379")
app = Celery("celery_bench", broker=f"{URL}/0", backend=f"{URL}/1")
app.conf.update(
    broker_connection_retry_on_startup=True,
    # The default pool holds 10 broker connections, so 64 client threads
    # would queue for one; Synod's bench client keeps up to 256 idle HTTP
    # connections. main() raises this to the largest client count.
    broker_pool_limit=10,
)

NOTE = "one Redis, no persistence, not replicated"


@app.task(name="echo")
def echo(payload: Any) -> Any:
    return payload


def percentile(sorted_ms: List[float], p: float) -> float:
    """The same index as synod-bench's `percentile`."""
    if not sorted_ms:
        return float("nan")
    # int(x + 0.5) is Rust's f64::round for x >= 0; Python's round() rounds half to even.
    return sorted_ms[min(int((len(sorted_ms) - 1) * p + 0.5), len(sorted_ms) - 1)]


def load(n: int, seconds: float, op: Callable[[int, int], bool]) -> Tuple[List[float], int, float]:
    """`n` threads, each calling `op` back to back for `seconds` (like
    synod-bench's `load`): sorted latencies of the ops that succeeded in
    ms, the errors, and the seconds it took."""
    stop = threading.Event()
    n = max(n, 1)
    lats: List[List[float]] = [[] for _ in range(n)]
    errors = [0] * n

    def client(c: int) -> None:
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            try:
                ok = op(c, i)
            except Exception as e:  # counted, like a failed request
                if sum(errors) < 3:
                    print(f"celery_bench: client {c}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                ok = False
            if ok:
                lats[c].append((time.perf_counter() - t) * 1000.0)
            else:
                errors[c] += 1
            i += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(n)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return sorted(x for l in lats for x in l), sum(errors), elapsed


def wait_for(what: str, within: float, f: Callable[[], bool]) -> None:
    """Polls every 50 ms, as synod-bench's `wait_for` does."""
    deadline = time.monotonic() + within
    while not f():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within:.0f} s waiting for {what}")
        time.sleep(0.05)


class Servers:
    """redis-server and the Celery worker, in a temp dir, killed at exit."""

    def __init__(self, redis_bin: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="celery-bench-")
        self.procs: List[Tuple[subprocess.Popen[bytes], str]] = []
        self.redis_bin = redis_bin
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}"

    def log(self, name: str) -> str:
        return os.path.join(self.tmp.name, name)

    def spawn(self, cmd: List[str], log: str, env: Optional[dict] = None) -> subprocess.Popen[bytes]:
        with open(self.log(log), "wb") as out:
            # A session of its own, so stop() ends the worker's pool
            # processes with it and nothing else.
            p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append((p, log))
        return p

    def start_redis(self) -> redis.Redis:
        # One Redis: not replicated, nothing fsynced, where Synod commits
        # each submit on a majority of three nodes, each fsyncing its log.
        self.spawn(
            [
                self.redis_bin,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", self.tmp.name,
                # No snapshot, no append-only file: nothing reaches the disk.
                "--save", "",
                "--appendonly", "no",
            ],
            "redis.log",
        )
        r = redis.Redis(host="127.0.0.1", port=self.port, db=1)

        def up() -> bool:
            self.check_running()
            try:
                return bool(r.ping())
            except redis.ConnectionError:
                return False

        wait_for("redis-server to answer", 10, up)
        return r

    def start_worker(self) -> None:
        env = dict(os.environ, CELERY_BENCH_REDIS=self.url)
        here = os.path.dirname(os.path.abspath(__file__))
        env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
        self.spawn(
            [
                sys.executable, "-m", "celery", "-A", "celery_bench", "worker",
                "--pool", "prefork", "--concurrency", "2",
                "--loglevel", "WARNING", "--hostname", "bench@%h",
            ],
            "worker.log",
            env,
        )

    def check_running(self) -> None:
        for p, log in self.procs:
            if p.poll() is not None:
                name = os.path.basename(str(p.args[0]))
                with open(self.log(log), errors="replace") as f:
                    tail = f.read()[-3000:]
                raise RuntimeError(f"{name} exited ({p.returncode}):\n{tail}")

    def stop(self) -> None:
        for p, _ in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p, _ in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.procs = []
        self.tmp.cleanup()


def submit_batch(b: int, size: int, how: str) -> List[str]:
    """One batch of `size` echo tasks; their ids."""
    if how == "group":
        # Celery's documented way to send many tasks at once: one producer,
        # but one LPUSH round trip per task.
        res = group(echo.s({"b": b, "i": i}) for i in range(size)).apply_async()
        return [r.id for r in res.results]
    # kombu 5.7's Producer.batch: the same apply_async calls on one
    # producer, their LPUSHes sent as one Redis pipeline per batch.
    ids = []
    with app.producer_or_acquire() as producer, producer.batch(max_size=size):
        for i in range(size):
            ids.append(echo.apply_async(({"b": b, "i": i},), producer=producer).id)
    return ids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", required=True, help="the redis-server binary (bench/peers/redis.sh prints one)")
    ap.add_argument("--clients", default="1,64", help="submitting clients per run, comma-separated")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument(
        "--batch",
        choices=["pipeline", "group"],
        default="pipeline",
        help="how the 10,000 tasks are sent: apply_async in a kombu publish batch (one Redis pipeline "
        "per 100) or group(...).apply_async() (one round trip per task)",
    )
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",") if c]

    servers = Servers(args.redis)
    atexit.register(servers.stop)
    # SIGTERM (make interrupted, compare.py killed) runs the finally too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = servers.start_redis()
        app.conf.broker_url, app.conf.result_backend = f"{servers.url}/0", f"{servers.url}/1"
        app.conf.broker_pool_limit = max([10, *clients])
        servers.start_worker()
        # The worker is up when a task has gone through it.
        wait_for("the Celery worker", 60, lambda: servers.check_running() or echo_once(5))
        version = subprocess.run([args.redis, "--version"], capture_output=True, text=True).stdout.split()
        print(
            f"celery+redis: Celery {celery.__version__} (prefork, 2 processes) on {' '.join(version[:3])} "
            f"at 127.0.0.1:{servers.port}: {NOTE}, nothing fsynced",
            flush=True,
        )
        run(clients, args.seconds, args.batch, results, servers)
    finally:
        servers.stop()
    return 0


def echo_once(timeout: float) -> bool:
    try:
        return echo.apply_async(({"ping": 1},)).get(timeout=timeout) == {"ping": 1}
    except Exception:
        return False


def run(clients: List[int], seconds: float, batch: str, results: redis.Redis, servers: Servers) -> None:
    # Every task that has finished has one key in the result db (db 1 holds
    # nothing else), so DBSIZE counts them in O(1) without asking the
    # worker for anything: no events, no inspect, no extra work for Celery.
    def finished() -> int:
        servers.check_running()
        return int(results.dbsize())

    # 1. Submit throughput, the worker running as Synod's do.
    before, submitted = finished(), 0
    for n in clients:
        lat, errors, secs = load(n, seconds, lambda _c, _i: bool(echo.apply_async(({"n": 1},)).id))
        submitted += len(lat)
        print(
            f"tasks submit: {n} clients: {len(lat) / secs:.0f} submits/s, p50 {percentile(lat, 0.5):.2f} ms, "
            f"p99 {percentile(lat, 0.99):.2f} ms, {errors} errors ({NOTE})",
            flush=True,
        )
    # Let the backlog drain before measuring end to end, as synod-bench does.
    wait_for("the backlog to drain", 900, lambda: finished() >= before + submitted)

    # 2. End to end at moderate load: 8 clients, each submit then wait for the result.
    def e2e(c: int, i: int) -> bool:
        payload = {"n": 1, "c": c, "i": i}
        return echo.apply_async((payload,)).get(timeout=30) == payload

    lat, errors, secs = load(8, seconds, e2e)
    print(
        f"tasks end to end (8 clients, submit + wait): {len(lat) / secs:.0f} tasks/s, "
        f"p50 {percentile(lat, 0.5):.2f} ms, p99 {percentile(lat, 0.99):.2f} ms, {errors} errors ({NOTE})",
        flush=True,
    )

    # 3. Completion rate: 10,000 trivial tasks in batches of 100, the time
    #    until the result db has counted them all.
    before = finished()
    total, size = 10_000, 100
    started = time.perf_counter()
    ids: List[str] = []
    for b in range(total // size):
        ids.extend(submit_batch(b, size, batch))
    sent = time.perf_counter() - started
    wait_for("all tasks to finish", 600, lambda: finished() >= before + total)
    secs = time.perf_counter() - started
    # Finished is not succeeded: read every result, after the clock stopped.
    failed = 0
    for i in range(0, len(ids), 1000):
        keys = [app.backend.get_key_for_task(t) for t in ids[i : i + 1000]]
        failed += sum(1 for v in results.mget(keys) if v is None or json.loads(v)["status"] != "SUCCESS")
    if failed:
        raise RuntimeError(f"{failed} of {total} tasks did not succeed")
    print(
        f"tasks completed: {total} trivial tasks (submitted in batches of {size} in {sent:.2f} s) "
        f"all succeeded after {secs:.2f} s: {total / secs:.0f} tasks/s ({NOTE}; {batch} submit)",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
