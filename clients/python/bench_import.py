#!/usr/bin/env python3
"""Bulk import benchmark: N random 384-d float32 vectors from a numpy array
into a fresh collection through ``Client.upsert``; prints points per second.

    python clients/python/bench_import.py [-n 50000] [--addr URL] [--password P]

The node must be running (``make run``, or any ``synod serve``). The address
and password default to ``SYNOD_ADDR`` and ``SYNOD_PASSWORD``, else
``http://127.0.0.1:7700`` and ``synod-data/admin-password``. The collection
is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time

import numpy as np

from synod_client import Client
from synod_client._points import fragments, pack


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", "--points", type=int, default=50_000)
    ap.add_argument("--dimension", type=int, default=384)
    ap.add_argument("--addr", default=os.environ.get("SYNOD_ADDR", "http://127.0.0.1:7700"))
    ap.add_argument("--username", default="admin")
    ap.add_argument("--password", default=os.environ.get("SYNOD_PASSWORD"))
    ap.add_argument("--batch-size", type=int, default=None, help="points per request (default: as many as fit)")
    ap.add_argument("--collection", default=None, help="default: a new bench-<random> collection")
    ap.add_argument("--keep", action="store_true", help="keep the collection")
    args = ap.parse_args()
    password = args.password or open("synod-data/admin-password").read().strip()
    name = args.collection or f"bench-{secrets.token_hex(4)}"

    vectors = np.random.default_rng(42).standard_normal((args.points, args.dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(args.points)

    with Client(args.addr, username=args.username, password=password, timeout=120) as client:
        # Encoding alone, to tell the client's share from the node's.
        t = time.perf_counter()
        frags, _ = fragments(None, ids, vectors, None, None)
        n_bodies = sum(1 for _ in pack(frags, client._session.max_batch, client._session.max_body_bytes))
        encode_s = time.perf_counter() - t

        client.create_collection(name, args.dimension, metric="cosine")
        step = max(1, args.points // 10)
        next_report = [step]

        def progress(done: int, total: int | None) -> None:
            if done >= next_report[0] or done == total:
                rate = done / (time.perf_counter() - started)
                print(f"  {done:>8}/{total} points  {rate:8.0f} points/s", file=sys.stderr)
                next_report[0] += step

        started = time.perf_counter()
        out = client.upsert(name, ids=ids, vectors=vectors, batch_size=args.batch_size, on_progress=progress)
        elapsed = time.perf_counter() - started
        stored = client.get_collection(name).points
        if not args.keep:
            client.delete_collection(name)

    print(
        f"{out.points} points of {args.dimension} dimensions in {out.batches} requests ({n_bodies} at the default"
        f" size): {elapsed:.1f} s, {out.points / elapsed:.0f} points/s"
        f" (encoding alone: {encode_s:.1f} s, {args.points / encode_s:.0f} points/s); the node counts {stored}"
    )
    return 0 if stored == args.points else 1


if __name__ == "__main__":
    sys.exit(main())
