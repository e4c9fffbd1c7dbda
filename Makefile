# The two commands a newcomer needs: `make run` and `make test`. Both install first.
PYTHON ?= python3.12
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench clean

install: $(STAMP)

# The pinned lists in pyproject.toml, runtime and dev, as a requirements file. The project itself
# is not installed: it runs from the checkout.
define REQUIREMENTS
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["dev"]))
endef
export REQUIREMENTS

# Reinstall only when the dependency list changes, so a second `make run` starts at once.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -c "$$REQUIREMENTS" > $(VENV)/requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(VENV)/requirements.txt
	@touch $(STAMP)

run: install
	$(BIN)/python -m dashboard.supervisor

test: install lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Python: ruff (lint and format) and mypy with django-stubs. Templates: djLint's linter, and no
# line longer than 160 characters.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/djlint templates --lint --profile=django
	@awk 'length > 160 { print FILENAME ":" FNR ": longer than 160 characters"; long = 1 } \
		END { exit long }' $$(find templates -name '*.html')

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var
