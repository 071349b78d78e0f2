# The two commands the README starts with. Each sets up everything it needs
# on a fresh machine with Python 3.11+ and Node.js: a virtual environment
# with the package and its test tools, and the pinned CDK command line.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CDK_CLI_VERSION := 2.1148.1
# npx runs the CLI pinned above from .cdk-cli, never a global or newer one.
CDK := npx --no-install --prefix .cdk-cli cdk
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
# jsii names the Node.js major versions whose end-of-life banner it keeps quiet.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: simulate synth test install lint cfn-lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

.cdk-cli/node_modules/.bin/cdk:
	npm install --silent --no-audit --no-fund --prefix .cdk-cli aws-cdk@$(CDK_CLI_VERSION)

install: $(VENV)/.installed .cdk-cli/node_modules/.bin/cdk

## The main job: synthesize the example model stack and run its whole lifecycle
## locally for 28 simulated days on generated orders (docs/local.md), printing
## the summary; the report, decisions, objects and logs go to .simulate/out/.
SIM := .simulate
simulate: install synth
	$(BIN)/mdlc sample models/fraud.yaml --days 28 --start 2026-11-01 --seed 1 --out $(SIM)/orders.csv
	$(BIN)/mdlc simulate models/fraud.yaml --orders $(SIM)/orders.csv --assembly cdk.out --out $(SIM)/out

## Synthesize the example model stacks into cdk.out/ (no AWS account, no Docker).
synth: install
	$(CDK) synth --quiet --app "$(BIN)/python app.py"
	@ls cdk.out/*.template.json

## Run the whole test suite, the linters and the template checks.
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

lint: install
	$(BIN)/ruff check .

## cfn-lint the synthesized templates: errors fail, warnings are printed.
cfn-lint: synth
	$(BIN)/cfn-lint --non-zero-exit-code error cdk.out/*.template.json

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf cdk.out .pytest_cache $(SIM)
