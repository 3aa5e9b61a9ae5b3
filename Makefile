# Two entry points of the README. Each creates the virtual environment when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dermsynth-installed
# Every package pinned with its hashes (torch 2.14.1 / torchvision 0.29.1: wheels on the machines' disk).
LOCK := requirements.lock

.PHONY: quickstart test test-fast lint lock docs

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	sha256sum $(LOCK) | cut -d' ' -f1 > $(VENV)/dermsynth-lock.sha256
	$(PY) -m dermsynth.lockfile
	touch $(STAMP)

# Re-pin after editing pyproject.toml's dependencies (other pins are kept); `make lock UPGRADE=1`
# moves every package to its newest release. Commit requirements.lock.
lock:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11.7 \
		--python-platform x86_64-manylinux_2_28 -c lock-constraints.txt --custom-compile-command "make lock" \
		--quiet $(if $(UPGRADE),--upgrade) -o $(LOCK)

# The documentation site (mkdocs-material) into site/; the tests build it with --strict too.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict

quickstart: $(STAMP)
	$(VENV)/bin/dermsynth quickstart

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
