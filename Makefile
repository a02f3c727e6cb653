# Every target installs what it needs by itself: a fresh clone needs only `make demo` / `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := 1
export PYTHONDONTWRITEBYTECODE := 1
CDK := npx --no-install cdk
CDK_FLAGS := --no-notices
CDK_OUT ?= cdk.out
# The function's wheels for Lambda, one folder per architecture (infra/bundling.py's WHEELHOUSE).
WHEELHOUSE := .build/wheelhouse

.PHONY: help install test unit lint format demo synth deploy diff bench audit replay plan rehearse doctor clean

# make exits 2 whenever a recipe fails, whatever the command's own status (0: all good,
# 1: a failed check, 2: bad input). These targets say the status and what it means; scripts and CI
# that must tell "lost data" from "bad input" run the command itself (README, "Exit status").
exit_status = { status=$$?; echo "make $@: exited $$status ($(EXIT_$@))" >&2; exit $$status; }
EXIT_demo := 1: records lost, out of order, corrupted, discarded or dead-lettered (and not replayed); 2: an option or setting it can't use
EXIT_audit := 1: records lost, out of order or corrupted; 2: an option, broker, topic or stream it can't use
EXIT_replay := 1: records not delivered, objects unreadable or not moved; 2: bad arguments or settings, or an AWS error before sending
EXIT_plan := 1: the target is out of reach; 2: a bad option

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt lambda/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The function's package (lambda/msk_kinesis_sink), importable from anywhere, edits seen at once.
$(VENV)/.editable: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --editable .
	touch $@

$(WHEELHOUSE)/.downloaded: lambda/requirements.txt infra/bundling.py | $(VENV)/.editable
	$(PY) -m infra.bundling download
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.editable $(WHEELHOUSE)/.downloaded node_modules/.installed ## Create .venv, the function's wheelhouse and node_modules (pinned)

# The suite runs on this many pytest-xdist workers (the e2e and rehearsal folders each on one:
# tests/conftest.py); 0 runs it in this process.
TEST_WORKERS ?= 2
PYTEST_WORKERS := -n $(TEST_WORKERS) --dist loadgroup

test: install ## Run the whole test suite (unit, integration, e2e, infra; TEST_WORKERS=2)
	$(PY) -m pytest $(PYTEST_WORKERS)

unit: install ## Fast unit tests only
	$(PY) -m pytest $(PYTEST_WORKERS) tests/unit

lint: install ## ruff + mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: install ## Run the local loop: broker + kinesalite + ESM (event source mapping) emulator + faults, then verify (FAULTS=, RECORDS=, DEMO_ARGS=--replay: dead letters replayed, --keep: nothing given up)
	@$(PY) -m localloop.demo $(DEMO_ARGS) || $(exit_status)

audit: install ## Verify a stream against a topic: AUDIT_ARGS="--bootstrap H:P --topic T --stream S [--endpoint URL]"
	@$(PY) -m localloop.audit $(AUDIT_ARGS) || $(exit_status)

replay: install ## Replay dead letters and discarded batches, a dry run unless --apply (REPLAY_ARGS="--function NAME --apply")
	@$(PY) -m msk_kinesis_sink.replay $(REPLAY_ARGS) || $(exit_status)

plan: $(VENV)/.editable ## Capacity plan for a target (PLAN_ARGS="--mb-per-s 20 --record-bytes 2000 --partitions 24 --key-skew 0.02"); docs/scaling.md
	@$(PY) -m infra.plan $(PLAN_ARGS) || $(exit_status)

synth: install ## cdk synth offline into cdk.out/ (or CDK_OUT=dir), then report what it built (CDK_ARGS="-c k=v")
	$(CDK) synth $(CDK_FLAGS) --quiet --output $(CDK_OUT) $(CDK_ARGS)
	@$(PY) -m infra.synth_report $(CDK_OUT)

diff: install ## cdk diff against the deployed stack (needs AWS credentials)
	$(CDK) diff $(CDK_FLAGS) $(CDK_ARGS)

deploy: install ## cdk deploy (needs AWS credentials)
	$(CDK) deploy $(CDK_FLAGS) $(CDK_ARGS)

rehearse: install ## Deploy the synthesized stack into a local moto server, run it under its own role, audit, ask the doctor (REHEARSE_ARGS="--variant default --without-permission kinesis:PutRecords")
	$(PY) -m rehearse $(REHEARSE_ARGS)

doctor: $(VENV)/.editable ## Read-only health check of a deployed stack: STACK=NAME (needs AWS credentials; DOCTOR_ARGS="--region eu-west-1")
	@test -n "$(STACK)" || { echo "doctor: error: STACK is required: make doctor STACK=<stack name>" >&2; exit 2; }
	@$(PY) -m msk_kinesis_sink.doctor --stack "$(STACK)" $(DOCTOR_ARGS)

bench: install ## Benchmarks (never gate CI): writes bench/results/latest.json and latest.png
	test -x bench/.venv/bin/python || $(PYTHON) -m venv bench/.venv
	bench/.venv/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	bench/.venv/bin/pip install --quiet --disable-pip-version-check --no-deps --editable .
	bench/.venv/bin/python -m bench.run $(BENCH_ARGS)

clean: ## Remove build outputs (keeps .venv and node_modules)
	rm -rf cdk.out .build .demo .rehearse .pytest_cache .mypy_cache .ruff_cache
