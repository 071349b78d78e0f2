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
# checkov has a virtual environment of its own (see `make checkov` below).
CHECKOV_VENV := build/venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
# jsii names the Node.js major versions whose end-of-life banner it keeps quiet.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
# The CDK CLI's AWS SDK warns on Node.js 20 that its releases after January
# 2027 need 22 (aws/aws-sdk-js-v3#7983), whenever it builds an SDK client.
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED := true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: simulate synth test install lambda-wheels binutils java lint cfn-lint bench clean test-lowest test-newest test-spark checkov

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the project's dependencies change. constraints.txt holds
# the exact versions the repository's own runs use (pyproject.toml has ranges).
# setuptools notes on every editable install that a folder named like a package
# could shadow it (mapping lambdas/ to mdlc_handlers makes it install an import
# finder): nothing to act on, so it is not printed.
QUIET_EDITABLE := ignore:Editable installation
$(VENV)/.installed test-lowest test-newest: export PYTHONWARNINGS = $(QUIET_EDITABLE)
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@
	@echo "mdlc and the test tools are in $(BIN)/: 'source $(BIN)/activate' puts them on PATH"

.cdk-cli/node_modules/.bin/cdk:
	npm install --silent --no-audit --no-fund --prefix .cdk-cli aws-cdk@$(CDK_CLI_VERSION)

## The wheels of the data functions' layer (NumPy, PyArrow, DuckDB, sqlglot,
## Powertools) for the functions' runtime and architecture, and DuckDB for the
## Processing image, downloaded once; the layer is installed and trimmed here
## too (binutils' strip), so synthesis needs neither the network nor a tool
## (docs/engines.md, "The data layer").
LAMBDA_WHEELS := build/lambda-wheels
$(LAMBDA_WHEELS)/.complete: mdlc_constructs/wheels.py mdlc_constructs/layer_trim.py | $(VENV)/.installed binutils
	rm -rf $(LAMBDA_WHEELS)
	$(BIN)/python -m mdlc_constructs.wheels $(LAMBDA_WHEELS)
	touch $@

lambda-wheels: $(LAMBDA_WHEELS)/.complete

## binutils' strip trims the data layer: the system's, else binutils from
## apt-get on Debian/Ubuntu (with sudo when not root), else what to install.
binutils:
	@if command -v strip >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "no strip on PATH: installing binutils with apt-get (the data layer needs it)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq binutils; \
	else \
	  echo "the data layer needs binutils' strip and there is none on PATH nor apt-get" \
	    "to install it: install binutils" >&2; \
	  exit 1; \
	fi

## A Java runtime for PySpark (the Spark engine's tests, `mdlc quality --engine
## spark`): the system's `java` when there is one; else, on Debian/Ubuntu,
## default-jre-headless from apt-get (with sudo when not root); else a message
## saying what to install.
java:
	@if command -v java >/dev/null 2>&1 || { [ -n "$$JAVA_HOME" ] && [ -x "$$JAVA_HOME/bin/java" ]; }; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  echo "no java on PATH: installing default-jre-headless with apt-get (PySpark needs it)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq default-jre-headless; \
	else \
	  echo "PySpark needs a Java runtime (17 or later) and there is no java on PATH nor" \
	    "apt-get to install one: install a JRE and put java on PATH or set JAVA_HOME" >&2; \
	  exit 1; \
	fi

install: $(VENV)/.installed .cdk-cli/node_modules/.bin/cdk lambda-wheels java

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

## Run the whole test suite, the linters and the template checks; the slowest
## tests are listed at the end (the suite's budget is about 6 minutes). Two
## workers, a module each at a time (its module fixtures built once), the Spark
## modules together on one JVM, slowest first (tests/work_units.py); the example
## stack is synthesized once for both (tests/conftest.py).
test: install $(CHECKOV)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q --durations=12

## The synthesis tests on the lowest versions pyproject.toml allows
## (constraints-lowest.txt) and on the newest, each in a virtual environment of
## its own under build/, so a range is only as wide as what was run on it.
## Left out: cfn-lint's checks, which test the linter's version (the lowest
## PyYAML resolves an older cfn-lint), and the example's quiet `cdk synth` on a
## shared platform (aws-cdk-lib 2.269 prints its "both is transitional" reminder
## although the example acknowledges it; 2.275 honours that).
COMPAT_SKIP := not cfn_lint and not (prints_nothing_but_its_result and shared-platform)
COMPAT_TESTS := tests/test_spec.py tests/test_compliance.py tests/test_storage.py \
	tests/test_model_stack.py tests/test_platform.py tests/test_cross_stack_references.py \
	tests/test_permissions_templates.py tests/test_quality_engine.py tests/test_features.py \
	tests/test_feature_flags.py tests/test_monitoring_files.py tests/test_feature_window.py \
	tests/test_quality_engines_handler.py tests/test_model_monitor_handler.py \
	tests/test_monitoring_metrics.py
COMPAT_REPORT := ^(aws-cdk-lib|cdk-nag|constructs|jsii|pydantic|pyyaml|numpy|pyarrow|sagemaker[-_]core|boto3|syrupy)==
build/venv-%/bin/python:
	$(PYTHON) -m venv build/venv-$*
	build/venv-$*/bin/pip install --quiet --upgrade pip

test-lowest: build/venv-lowest/bin/python
	build/venv-lowest/bin/pip install --quiet -c constraints-lowest.txt -e '.[dev]'
	build/venv-lowest/bin/pip list --format=freeze | grep -iE '$(COMPAT_REPORT)'
	build/venv-lowest/bin/python -m pytest -q -p no:cacheprovider -k '$(COMPAT_SKIP)' $(COMPAT_TESTS)

test-newest: build/venv-newest/bin/python
	build/venv-newest/bin/pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'
	build/venv-newest/bin/pip list --format=freeze | grep -iE '$(COMPAT_REPORT)'
	build/venv-newest/bin/python -m pytest -q -p no:cacheprovider -k '$(COMPAT_SKIP)' $(COMPAT_TESTS)

lint: install
	$(BIN)/ruff check .

## Only the Spark engine's tests (tests/test_spark.py, one local Spark session;
## make test runs them too): the same reports as DuckDB's (docs/engines.md).
test-spark: install
	$(BIN)/python -m pytest -q tests/test_spark.py

## cfn-lint every documented configuration (self-contained stacks, the shared
## platform, the two-stage pipeline of docs/pipeline.md), synthesized afresh:
## errors fail, warnings are printed; one known misfire is ignored by its exact
## message (tests/cfn_lint.py says which and why). make test runs the same checks.
cfn-lint: install
	$(BIN)/python -m tests.cfn_lint

## checkov on the templates of a model in a network (a VPC the stack creates;
## an existing one on a shared platform, two models): no Lambda function outside
## the VPC (CKV_AWS_117) and no failed check that the reasoned allow-list of
## tests/checkov.py does not explain. checkov gets a virtual environment of its
## own, pinned by constraints-checkov.txt: it pins boto3 far below ours. make
## test builds it and runs the same checks (tests/test_network.py).
$(CHECKOV): constraints-checkov.txt | $(CHECKOV_VENV)/bin/python
	$(CHECKOV_VENV)/bin/pip install --quiet -c constraints-checkov.txt checkov
	touch $@

checkov: install $(CHECKOV)
	$(BIN)/python -m tests.checkov

bench: install
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf cdk.out .pytest_cache $(SIM)
