#!/usr/bin/env python3
"""hnswlib on the data `synod-bench vectors --save DIR` wrote, for DESIGN §7's
comparison: same vectors, same queries, same truth, one query per call on one
thread (as the Synod bench measures its index), at the same m and ef values.

    python3 -m venv /tmp/hv && /tmp/hv/bin/pip install hnswlib numpy
    synod-bench vectors --n 100000 --dim 128 --save /tmp/vec --index-only
    /tmp/hv/bin/python bench/hnswlib_compare.py /tmp/vec --dim 128 --metric l2
"""
import argparse
import time

import hnswlib
import numpy as np

p = argparse.ArgumentParser()
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
for ef in [int(x) for x in a.ef.split(",")]:
    index.set_ef(ef)
    found, lat = 0, []
    t = time.time()
    for i, q in enumerate(queries):
        s = time.perf_counter()
        labels, _ = index.knn_query(q, k=10)
        lat.append(time.perf_counter() - s)
        found += len(set(labels[0].tolist()) & set(truth[i].tolist()))
    qps = len(queries) / (time.time() - t)
    lat.sort()
    print(f"hnswlib ef {ef:>4}: recall@10 {found / (10 * len(queries)):.4f}, {qps:>7.0f} QPS (1 thread), "
          f"p50 {lat[len(lat) // 2] * 1e6:.0f} us")
