# Every target creates the virtualenv on first use, so a fresh clone needs only Python.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test check lint types misuse bench compare soak share-check plots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --data ./demo-data

# The whole suite, then the lint and type gates (CI runs exactly this).
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider
	$(MAKE) --no-print-directory check

check: lint types

# The misuse tier of the reliability battery on its own (docs/durability.md).
misuse: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/storage/test_misuse_storage.py tests/storage/test_misuse_readonly.py \
		tests/storage/test_log_memory.py tests/client/test_misuse_client.py tests/client/test_misuse_topics.py \
		tests/client/test_misuse_lifecycle.py tests/cli/test_cli_interrupt.py

lint: $(STAMP)
	$(VENV)/bin/ruff check logq tests benchmarks tools
	$(VENV)/bin/ruff format --check logq tests benchmarks tools

types: $(STAMP)
	$(VENV)/bin/mypy

BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(STAMP)
	$(PY) -m pytest benchmarks --benchmark-enable --benchmark-only -q -p no:cacheprovider

# Side by side with SQLite (always) and Redis Streams (when redis-server is installed);
# rewrites the measured block of docs/benchmarks.md.
compare: $(BENCH_STAMP)
	$(PY) benchmarks/compare.py --markdown docs/benchmarks.md

# PNG plots for docs/benchmarks.md from a fresh benchmark run and comparison.
plots: $(BENCH_STAMP)
	mkdir -p .benchmarks
	$(PY) -m pytest benchmarks --benchmark-enable --benchmark-only -q -p no:cacheprovider --benchmark-json .benchmarks/bench.json
	$(PY) benchmarks/compare.py --json > .benchmarks/compare.jsonl
	$(PY) tools/plot_bench.py .benchmarks/bench.json .benchmarks/compare.jsonl --out docs/img

# The long reliability tier: hundreds of kills, power cuts on loop images, contention.
soak: $(STAMP)
	$(PY) tools/soak.py

# The long share-group checker (docs/queues.md): 20 runs of 6 workers killed with kill -9,
# short locks, poison records; exit 1 with a report on any violation. ARGS=... to change it.
share-check: $(STAMP)
	$(PY) tools/share_checker.py --runs 20 --records 2000 --processes 6 --partitions 3 --kills 15 $(ARGS)

clean:
	rm -rf $(VENV) demo-data .pytest_cache
