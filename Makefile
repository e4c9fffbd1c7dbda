# The two commands a newcomer needs: `make run` and `make test`. Both install first.
PYTHON ?= python3.12
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv

# The lock files, every package with the hashes of all its published files (`make lock` writes
# them from pyproject.toml): run.txt is what running needs, dev.txt what the tests and linters add
# (at run.txt's versions), uv.txt the installer itself.
RUN_LOCK := requirements/run.txt
DEV_LOCK := requirements/dev.txt
UV_LOCK := requirements/uv.txt
UV_VERSION := 0.13.10

# Each stamp is touched once its lock file is installed, so a second `make run` starts at once and
# a changed lock file reinstalls.
UV_STAMP := $(VENV)/.installed-uv
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

# uv installs the locked packages (about 2 s into an empty venv when its cache is warm, where pip
# took half a minute here); pip brings uv into the venv, checked against requirements/uv.txt.
# --no-deps: the lock files list every package, so nothing outside them is installed.
INSTALL = $(UV) pip install --quiet --python $(BIN)/python --require-hashes --no-deps

.PHONY: install install-dev lock run test test-fast lint format bench clean

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP)

$(UV_STAMP): $(UV_LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r $(UV_LOCK)
	@touch $@

$(RUN_STAMP): $(RUN_LOCK) $(UV_STAMP)
	$(INSTALL) -r $(RUN_LOCK)
	@touch $@

$(DEV_STAMP): $(DEV_LOCK) $(RUN_STAMP)
	$(INSTALL) -r $(DEV_LOCK)
	@touch $@

# The dev list of pyproject.toml, as a requirements file (the project itself is not installed: it
# runs from the checkout).
define DEV_REQUIREMENTS
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["optional-dependencies"]["dev"]))
endef
export DEV_REQUIREMENTS

# Rewrites the lock files from pyproject.toml for CPython 3.12 on Linux x86_64. A package that
# pyproject.toml does not name keeps the version it has in the lock file while that still fits;
# `make lock LOCK_ARGS=--upgrade` moves them all to the newest that fit.
COMPILE = $(UV) pip compile --quiet --generate-hashes --python-version 3.12 \
	--python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" $(LOCK_ARGS)

lock: $(UV_STAMP)
	@mkdir -p requirements
	$(COMPILE) pyproject.toml -o $(RUN_LOCK)
	$(BIN)/python -c "$$DEV_REQUIREMENTS" | $(COMPILE) - -c $(RUN_LOCK) -o $(DEV_LOCK)
	echo "uv==$(UV_VERSION)" | $(COMPILE) - -o $(UV_LOCK)

run: install
	$(BIN)/python -m dashboard.supervisor

test: install-dev lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick loop: no lint, no browser tests, no tests that start real processes.
test-fast: install-dev
	$(BIN)/python -m pytest -m "not browser and not integration" $(PYTEST_ARGS)

# Python: ruff (lint and format) and mypy with django-stubs. Templates: djLint's linter, and no
# line longer than 160 characters.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/djlint templates --lint --profile=django
	@awk 'length > 160 { print FILENAME ":" FNR ": longer than 160 characters"; long = 1 } \
		END { exit long }' $$(find templates -name '*.html')

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var
