# The README's two commands: `make run` and `make test`. Both set everything up themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install php checkov run test test-fast lint build bench bench-readme clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## checkov (a dev dependency: the pyproject's `checkov` extra) lives in its own environment: its
## pins (boto3 < 1.36, packaging 23) would downgrade the project's. tests/infra/test_checkov.py runs it.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): pyproject.toml
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet "$$($(PYTHON) -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["optional-dependencies"]["checkov"][0])')"
	touch $(CHECKOV_STAMP)

checkov: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov -f infra/template.yaml --framework cloudformation --quiet \
		--skip-check "$$($(PYTHON) -c 'import yaml;print(",".join(yaml.safe_load(open("infra/checkov-skips.yaml"))))')"

## php-cli checks the Sugar package's PHP files (`php -l`); installed from Debian where missing.
php:
	@command -v php >/dev/null 2>&1 || { apt-get update && apt-get install -y php-cli; }

## Start the whole connector on 127.0.0.1 (moto, Xero emulator, Sugar double, gateway, workers),
## run the demo against it, and keep it running until Ctrl-C.
run: install
	# A failure reaches its dead-letter queue after 2 deliveries instead of 8, so the demo's
	# injected failure shows in `sugar-xero status` within seconds.
	# The functions' JSON logs go to the file it names, so the terminal tells the demo's story.
	SUGAR_XERO_LOCAL_MAX_RECEIVE_COUNT=2 $(VENV)/bin/sugar-xero local --demo --log-file .sugar-xero-local.log

## Every test: unit, integration, contract, template checks, end to end.
test: install php $(CHECKOV_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install php $(CHECKOV_STAMP)
	$(PY) -m pytest -m "not e2e and not slow" $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .

## sam build without Docker: manylinux CPython 3.13 wheels into .aws-sam/build
build: install
	bash infra/build.sh

## Benchmarks: ratios measured in one run, printed as a table and written to bench/results.md
## (committed), then copied into the README's table
bench: install
	$(PY) -m bench
	$(PY) -m bench.readme

## The README's benchmark table from bench/results.md (a test fails when they differ)
bench-readme: install
	$(PY) -m bench.readme

clean:
	rm -rf .aws-sam .pytest_cache .hypothesis build dist *.egg-info
