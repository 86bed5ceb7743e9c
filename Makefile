# depthlab: two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck bench docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned first so that no dependency can pull another build.
	$(PY) -m pip install --quiet -c constraints.txt "torch==2.13.0"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/depthlab demo --out demo-out

test: setup
	$(PY) -m pytest -n 2 --dist loadfile -q

lint: setup
	$(VENV)/bin/ruff check depthlab tests bench examples
	$(VENV)/bin/ruff format --check depthlab tests bench examples
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/trainer_overhead.py
	$(PY) bench/sweep_throughput.py
	$(PY) bench/claims_quick.py

# The claim pages (from the registry) and their plots (each claim's quick mode).
docs: setup
	$(VENV)/bin/depthlab claims --docs docs/claims
	for c in $$($(PY) -c "from depthlab.claims import claim_names; print(*claim_names())"); do \
		$(VENV)/bin/depthlab reproduce $$c --quick --out docs/claims || true; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
