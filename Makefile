# Every target creates the virtualenv on first use, so a fresh clone needs only Python.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench compare soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py --data ./demo-data

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) -m pytest benchmarks --benchmark-enable --benchmark-only -q -p no:cacheprovider

clean:
	rm -rf $(VENV) demo-data .pytest_cache
