#!/usr/bin/env python3
"""hnswlib on a data set `synod-bench vectors --save DIR` or `synod-bench
embed-set --out DIR` wrote: the same vectors, queries and truth, the same
m, ef_construction and ef values, on one thread. Each ef is timed two ways,
so that neither side carries a per-call overhead alone:

- per call: one `knn_query` per query, as `synod-bench vectors` sends one
  search per request;
- whole matrix: one `knn_query` of every query at once (still one thread),
  the peer of Synod's batch endpoint.

    sh bench/peers/hnswlib.sh     # prints the venv's python
    synod-bench vectors --n 100000 --dim 128 --save /tmp/vec --index-only
    ~/.cache/synod/bench-venv/bin/python bench/hnswlib_compare.py /tmp/vec --dim 128 --metric l2
"""
import argparse
import time

import hnswlib
import numpy as np

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("dir")
p.add_argument("--dim", type=int, default=128)
p.add_argument("--metric", default="l2", choices=["l2", "cosine", "dot"])
p.add_argument("--m", type=int, default=32)
p.add_argument("--ef-construction", type=int, default=200)
p.add_argument("--ef", default="32,64,128,200,400")
a = p.parse_args()

base = np.fromfile(f"{a.dir}/base.f32", dtype="<f4").reshape(-1, a.dim)
queries = np.fromfile(f"{a.dir}/queries.f32", dtype="<f4").reshape(-1, a.dim)
truth = np.fromfile(f"{a.dir}/truth.u32", dtype="<u4").reshape(len(queries), -1)
space = {"l2": "l2", "cosine": "cosine", "dot": "ip"}[a.metric]
index = hnswlib.Index(space=space, dim=a.dim)
index.init_index(max_elements=len(base), ef_construction=a.ef_construction, M=a.m)
index.set_num_threads(2)
t = time.time()
index.add_items(base, np.arange(len(base)))
build = time.time() - t
print(f"hnswlib build: {build:.1f} s for {len(base)} points ({len(base) / build:.0f} points/s, 2 threads)")
index.set_num_threads(1)


def recall(labels: np.ndarray) -> float:
    return sum(len(set(labels[i].tolist()) & set(truth[i].tolist())) for i in range(len(queries))) / (10 * len(queries))


for ef in [int(x) for x in a.ef.split(",")]:
    index.set_ef(ef)
    lat, rows = [], []
    t = time.time()
    for q in queries:
        s = time.perf_counter()
        labels, _ = index.knn_query(q, k=10)
        lat.append(time.perf_counter() - s)
        rows.append(labels[0])
    qps = len(queries) / (time.time() - t)
    lat.sort()
    print(f"hnswlib ef {ef:>4}: recall@10 {recall(np.array(rows)):.4f}, {qps:>7.0f} QPS (1 thread), "
          f"p50 {lat[len(lat) // 2] * 1e6:.0f} us")
    t = time.time()
    labels, _ = index.knn_query(queries, k=10, num_threads=1)
    mqps = len(queries) / (time.time() - t)
    print(f"hnswlib matrix ef {ef:>4}: recall@10 {recall(labels):.4f}, {mqps:>7.0f} QPS (1 thread, every query in one call)")
