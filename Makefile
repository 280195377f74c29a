# The two commands of the README: `make run` (the service, its worker and the AWS emulator) and `make test`.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
DIGEST := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# What running needs (runtime + the local runtime), and everything (+ the test and benchmark tool chains):
# a newcomer's `make run` does not wait for matplotlib, playwright or cfn-lint.
RUN_STAMP := $(VENV)/.installed-run-$(DIGEST)
STAMP     := $(VENV)/.installed-all-$(DIGEST)
# The requirements of pyproject.toml's runtime dependencies plus the named extras, one per line.
REQUIREMENTS = $(PY) -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  print("\n".join(p["dependencies"] + [d for e in sys.argv[1:] for d in p["optional-dependencies"][e]]))'

# Packages go in with uv: measured here, a fresh venv of everything took pip 96 s (89 s with a warm cache) and
# uv 5 s (3 s warm). pip stays in the venv for `chalice package`, which calls it (chalice 1.34: pip<26.3).
UV := $(VENV)/bin/uv pip install -q --python $(PY)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q "uv==0.13.9"
	@$(UV) "pip>=23,<26.3"

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	@$(REQUIREMENTS) local > $(VENV)/requirements-run.lock
	$(UV) -r $(VENV)/requirements-run.lock
	@rm -f $(VENV)/.installed-run-* && touch $(RUN_STAMP)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	@$(REQUIREMENTS) local test bench > $(VENV)/requirements.lock
	$(UV) -r $(VENV)/requirements.lock
	@rm -f $(VENV)/.installed-* && touch $(STAMP) $(RUN_STAMP)

install-run: $(RUN_STAMP)

install: $(STAMP)

services:
	@bash infra/local/ensure-services.sh

# LocalStack's own venv (Python 3.13+, infra/local/localstack.py): built on first use, once per machine; on a
# machine without Python 3.13+ this says so and `make run` uses moto server, `make test` skips LocalStack.
localstack-venv: install-run
	@$(PY) -m infra.local.localstack install --if-possible

# The AWS emulator: LocalStack in host mode where it can run, else moto server (EMULATOR=moto|localstack picks).
run: install-run services
	$(PY) -m infra.local.run

# Back to a fresh demo (performance 1, seats 1-120 all free): drops the local database, Redis keys, stream
# positions and ledger. Refuses while `make run` is running.
reset: install-run services
	$(PY) -m infra.local.reset

# The same server and worker in the `localstack` stage, against LocalStack in host mode on 127.0.0.1:4566.
localstack: install-run services
	$(PY) -m infra.local.run --stage localstack --emulator localstack

# The development server Chalice ships (single-threaded; for debugging) on port 8001 (PORT=... overrides), with
# the emulator's dummy credentials (infra/local/chalice_local.py). `make run` must be running alongside, or the
# emulator, queues and worker started another way.
chalice-local: install-run
	$(PY) -m infra.local.chalice_local --stage local

# Operator commands, against the stage `make run` serves (ARGS passes options through):
#   make reconcile ARGS="--dry-run"      make reconcile ARGS="--performance 1"
#   make dlq ARGS="list"                 make dlq ARGS="redrive --all"
reconcile: install-run
	$(PY) -m infra.reconcile $(ARGS)

dlq: install-run
	$(PY) -m infra.dlq $(or $(ARGS),list)

# A deployable SAM template for AWS (stage prod): Chalice's, completed by infra/aws_template.py (queues, DLQs,
# streams, event sources, VPC, roles). docs/deploy.md says how to deploy it.
package: install-run
	rm -rf build/sam.json build/deployment.zip
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(VENV)/bin/chalice package --stage prod build/
	$(PY) -m infra.sam build/sam.json

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The suite in three lanes at once (tests/lanes.py); each lane is a pytest session with a world of its own.
test: install services lint localstack-venv
	$(PY) -m tests.lanes

# Only the fault tests (MariaDB/Redis of their own killed, stopped and restarted under load; a few minutes).
test-faults: install services
	$(PY) -m pytest -q -p no:cacheprovider -m fault

# The benchmark (docs/benchmark.md, loadtests/README.md): the five strategies under 10,000-request bursts, the
# seat map's reads, and the bursts again while 2,000 viewers follow the map, on a stack of its own (granian,
# worker, LocalStack; database booking_bench), into loadtests/results/<timestamp>/.
# ARGS passes options: make bench ARGS="--strategies redis_async,db_lock --requests 2000"
bench: install services localstack-venv
	$(PY) -m loadtests.bench $(ARGS)

# This tree against an earlier commit, benched turn and turn about in one session (loadtests/bench/compare.py):
# server CPU per request, MySQL's, the stack's, req/s, as ratios. make bench-compare BASE=8620868 ARGS="--rounds 3"
bench-compare: install services localstack-venv
	$(PY) -m loadtests.bench.compare --base $(or $(BASE),HEAD~1) $(ARGS)

# The same, small (300 requests per strategy and scenario), asserting the invariants; `make test` runs it too.
bench-smoke: install services localstack-venv
	$(PY) -m loadtests.bench --smoke $(ARGS)

# docs/benchmark.md's comparison table from the latest full results folder (or ARGS="loadtests/results/<folder>").
bench-readme: install
	$(PY) -m loadtests.bench readme $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build
