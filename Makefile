# Two entry points of the README. Each creates the virtual environment when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dermsynth-installed
# Every package pinned with its hashes (torch 2.14.1 / torchvision 0.29.1: wheels on the machines' disk).
LOCK := requirements.lock

.PHONY: quickstart test test-fast lint lock docs

# The installer: uv (INSTALLER=uv, the default) or pip (INSTALLER=pip, and the fallback when uv cannot
# be bootstrapped or fails). Both install exactly the lock with its hashes checked. uv is pinned with its
# own hashes in the lock (dev extras) and bootstrapped with pip; it reads no pip.conf, so pip's own index
# settings (find-links, index-url, extra-index-url from pip.conf or PIP_* variables) are handed to it, and
# it may take each file from whichever index has it (as pip does: the hashes decide, not the index).
# Neither step compiles bytecode ahead (uv pip never does; pip is told not to): Python compiles a module
# when it is first imported and keeps the .pyc, which the quickstart's few thousand imports need far less
# than the whole lock, so PYTHONDONTWRITEBYTECODE (set on some machines, CI's among them) is unset for
# these recipes only. Install times: docs/benchmarks.md.
unexport PYTHONDONTWRITEBYTECODE
INSTALLER ?= uv
UV := $(VENV)/bin/uv
PIP_SOURCES = $$($(PY) -m pip config list 2>/dev/null | sed -n "s/^[^.]*\.\(find-links\|index-url\|extra-index-url\)='\(.*\)'$$/\1 \2/p" \
	| while read -r k v; do for u in $$v; do printf -- '--%s %s ' "$$k" "$$u"; done; done)
UV_INSTALL = awk '/^uv==/{p=1} p{print} p && !/\\$$/{exit}' $(LOCK) > $(VENV)/uv-pin.txt \
	&& $(PY) -m pip install --quiet --require-hashes -r $(VENV)/uv-pin.txt \
	&& $(UV) pip install --python $(PY) --quiet --require-hashes --index-strategy unsafe-best-match \
		$(PIP_SOURCES) -r $(LOCK) \
	&& $(UV) pip install --python $(PY) --quiet --no-deps -e .
PIP_INSTALL = $(PY) -m pip install --quiet --upgrade pip \
	&& $(PY) -m pip install --quiet --no-compile --require-hashes -r $(LOCK) \
	&& $(PY) -m pip install --quiet --no-compile --no-deps -e .

# The lock pins wheels for one platform: say so at once on another, not after a failed resolve.
PYTHON ?= python3
REQUIRE_PLATFORM = -c 'import platform, sys; sys.exit(0 if (sys.platform, platform.machine(), sys.version_info[:2]) \
	== ("linux", "x86_64", (3, 11)) else "dermsynth: requirements.lock is pinned for Linux x86_64 and CPython 3.11, " \
	"this is %s %s with Python %s. Use a Python 3.11 (make PYTHON=python3.11 ...), or install without the pins: " \
	"pip install torch torchvision && pip install -e \".[dev]\"" % (sys.platform, platform.machine(), \
	platform.python_version()))'

$(STAMP): pyproject.toml $(LOCK)
	@if [ -x $(PY) ]; then $(PY) $(REQUIRE_PLATFORM); else $(PYTHON) $(REQUIRE_PLATFORM); fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if [ "$(INSTALLER)" = uv ] && $(UV_INSTALL); then echo "installed $(LOCK) with uv"; \
	else echo "installing $(LOCK) with pip"; $(PIP_INSTALL); fi
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

# Two test processes (pytest-xdist; each file's tests stay in one process, so module fixtures are
# built once): most tests train one-thread models, and one process left the second core idle.
# --durations=25: every log shows the slowest tests. test-fast leaves out the tests marked slow
# (everything that trains, generates or runs a study).
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=25

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS) -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
