#!/usr/bin/env python3
"""Synod's built-in all-MiniLM-L6-v2 against sentence-transformers, on the same
sentences, on this machine, in one run: `synod-bench embed` first, then
sentence-transformers (CPU torch) timed the same way, then both side by side.

    python3 -m venv ~/.cache/synod/bench-venv
    ~/.cache/synod/bench-venv/bin/pip install sentence-transformers
    make model        # all-MiniLM-L6-v2 into ~/.cache/synod/models
    ~/.cache/synod/bench-venv/bin/python bench/embed_compare.py \
        --synod-bench ~/.cache/synod-target/release/synod-bench --models-dir ~/.cache/synod/models

Both sides embed the same sentences with the same model files, one
sentence per call for batch 1 and in submission-order chunks of 32 for batch
32, in one process each, with every core (torch's and candle's default
thread counts). Memory is the resident set the model adds to its process.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

p = argparse.ArgumentParser()
p.add_argument("--synod-bench", required=True, help="the synod-bench binary (a release build)")
p.add_argument("--models-dir", required=True)
p.add_argument("--model", default="all-MiniLM-L6-v2")
p.add_argument("--n", type=int, default=512, help="sentences")
p.add_argument("--single", type=int, default=200, help="sentences timed one at a time")
a = p.parse_args()

# Deterministic sentences of 4 to 40 words from a small vocabulary.
WORDS = (
    "the a cluster leader replicates log entries to its followers vector search finds similar documents "
    "quickly model embeds every sentence into numbers cat sat on mat while markets fell sharply today and "
    "engineers deploy services across machines with durable queues tasks retry after failures of nodes "
    "weather is lovely in spring river flows through old town music plays"
).split()
rng = random.Random(7)
sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 40))) + "." for _ in range(a.n)]
with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
    f.write("\n".join(sentences) + "\n")
    path = f.name


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round((len(xs) - 1) * q))]


def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


out = subprocess.run(
    [a.synod_bench, "embed", "--models-dir", a.models_dir, "--model", a.model, "--sentences", path,
     "--single", str(a.single), "--json"],
    check=True, capture_output=True, text=True,
)
synod = json.loads(out.stdout.strip().splitlines()[-1])

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

before = rss_mib()
t = time.perf_counter()
# The same files Synod loads: config.json, tokenizer.json, model.safetensors
# and the sentence config; pooling and normalisation as the model card says.
from sentence_transformers import models as st_models  # noqa: E402

mdir = os.path.join(a.models_dir, a.model)
word = st_models.Transformer(mdir, max_seq_length=256)
pool = st_models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
model = SentenceTransformer(modules=[word, pool, st_models.Normalize()], device="cpu")
load_s = time.perf_counter() - t
model.encode(sentences[:64], batch_size=32)

one = []
t = time.perf_counter()
for s in sentences[: a.single]:
    t1 = time.perf_counter()
    model.encode([s], batch_size=1)
    one.append((time.perf_counter() - t1) * 1000)
one_rate = len(one) / (time.perf_counter() - t)
batch = []
t = time.perf_counter()
for i in range(0, len(sentences), 32):
    t1 = time.perf_counter()
    model.encode(sentences[i : i + 32], batch_size=32)
    batch.append((time.perf_counter() - t1) * 1000)
batch_rate = len(sentences) / (time.perf_counter() - t)
st = {
    "engine": f"sentence-transformers (torch {torch.__version__}, {torch.get_num_threads()} threads)",
    "load_s": load_s,
    "batch1": {"sentences_per_s": one_rate, "p50_ms": pct(one, 0.5), "p99_ms": pct(one, 0.99)},
    "batch32": {"sentences_per_s": batch_rate, "p50_ms": pct(batch, 0.5), "p99_ms": pct(batch, 0.99)},
    "model_rss_mib": rss_mib() - before,
}
os.unlink(path)

print(f"{len(sentences)} sentences, {a.single} at batch 1; cores: {os.cpu_count()}")
print(f"{'':34} {'synod':>12} {'sentence-transformers':>24} {'ratio':>7}")
rows = [
    ("batch 1 sentences/s", synod["batch1"]["sentences_per_s"], st["batch1"]["sentences_per_s"], True),
    ("batch 1 p50 ms", synod["batch1"]["p50_ms"], st["batch1"]["p50_ms"], False),
    ("batch 1 p99 ms", synod["batch1"]["p99_ms"], st["batch1"]["p99_ms"], False),
    ("batch 32 sentences/s", synod["batch32"]["sentences_per_s"], st["batch32"]["sentences_per_s"], True),
    ("batch 32 p50 ms per batch", synod["batch32"]["p50_ms"], st["batch32"]["p50_ms"], False),
    ("model resident MiB", synod["model_rss_mib"], st["model_rss_mib"], False),
    ("load s", synod["load_s"], st["load_s"], False),
]
for name, ours, theirs, higher_better in rows:
    ratio = ours / theirs if theirs else float("nan")
    print(f"{name:34} {ours:12.2f} {theirs:24.2f} {ratio:7.2f}x")
print(json.dumps({"synod": synod, "sentence_transformers": st}), file=sys.stderr)
