# The two commands a newcomer needs: `make run` and `make test`. Everything else is for developers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# What `make generate` writes: the servers' stubs, the Python client's copy of them, and the
# TypeScript and Go clients' stubs.
GENERATED := ledger/v1 clients/python/src/ledger_client/v1 clients/typescript/src/gen clients/go/ledgerv1

.PHONY: install run test lint format generate check-generated unit fuzz soak bench bench-quick

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

## Start Kafka, the schema registry, PostgreSQL and the services; Ctrl-C stops everything.
run: install
	$(PY) -m devstack run

## Lint, type-check, verify generated stubs, then the whole test suite against the real stack.
test: install check-generated lint
	$(PY) -m pytest -q

unit: install
	$(PY) -m pytest -q -m "not integration"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## Regenerate the protobuf/gRPC stubs under ledger/v1, clients/python, clients/typescript/src/gen and
## clients/go/ledgerv1 from proto/. The TypeScript generator (ts-proto) comes from `npm ci` in
## clients/typescript, the Go plugins from `go install` at pinned versions, each run when needed.
generate: install
	$(PY) scripts/generate_stubs.py
	$(PY) scripts/generate_typescript_stubs.py
	$(PY) scripts/generate_go_stubs.py

## CI: the committed stubs must be exactly what the generator produces.
check-generated: generate
	@git diff --exit-code -- $(GENERATED) || { echo "Generated stubs are stale: run 'make generate' and commit." >&2; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard -- $(GENERATED))" || { echo "Untracked generated stubs in $(GENERATED): commit them." >&2; exit 1; }

## Fuzz: 10,000 generated calls to every RPC on the real stack (make test makes 300).
fuzz: install
	LEDGER_FUZZ_EXAMPLES=10000 $(PY) -m pytest -q tests/fuzz

## Soak: >= 90 s of load while every component is SIGKILLed at least twice, then again on three
## brokers whose partition leader's broker is killed again and again; see docs/reliability.md.
soak: install
	$(PY) -m fault_drill --soak
	$(PY) -m fault_drill --soak --three-brokers
	$(PY) -m fault_drill --soak --three-shards

## Benchmarks (docs/performance.md): a table, and JSON in bench/results/. Needs Go (builds ghz once).
bench: install
	$(PY) -m bench

## The same, short (about 4 minutes: every scenario once, briefly).
bench-quick: install
	$(PY) -m bench --quick
