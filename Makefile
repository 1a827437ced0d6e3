# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates and fills its own virtual environment first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo tiny-clip benchmarks clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q -p no:cacheprovider

demo: install
	$(VENV)/bin/zeroground demo --out demo_out

tiny-clip: install
	$(PY) scripts/train_tiny_clip.py --out src/zeroground/assets/tiny_clip

benchmarks: install
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/extract_throughput.py

clean:
	rm -rf $(VENV) demo_out .pytest_cache
