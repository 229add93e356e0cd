# NeuronX GTM API — developer entry points. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test drills lint typecheck check ci clean install

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --no-input
	@KEY=$$($(BIN)/python manage.py seed_demo | tail -n 1); \
	echo ""; \
	echo "Demo API key (full scope): $$KEY"; \
	echo ""; \
	echo "Try it:"; \
	echo "  curl -s -X POST http://$(HOST):$(PORT)/v1/leads \\"; \
	echo "    -H 'Authorization: Bearer '$$KEY -H 'Content-Type: application/json' \\"; \
	echo "    -H 'Idempotency-Key: demo-1' \\"; \
	echo "    -d '{\"email\": \"ada@example.com\", \"first_name\": \"Ada\", \"last_name\": \"Lovelace\", \"source\": \"web_form\"}'"; \
	echo "  curl -s http://$(HOST):$(PORT)/v1/leads -H 'Authorization: Bearer '$$KEY"; \
	echo "API docs: http://$(HOST):$(PORT)/v1/docs"; \
	echo ""
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: $(STAMP)
	$(BIN)/pytest -q

# Fault drills (docs/faults.md): the production stack as subprocesses — gunicorn, Celery worker
# and beat — on PostgreSQL and Redis at 127.0.0.1 (shared ones, plus private ones they may kill).
drills: $(STAMP)
	$(BIN)/pytest -q tests/drills

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

check: $(STAMP)
	$(BIN)/python manage.py check --fail-level WARNING
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

ci:
	bash .ci/run

clean:
	rm -rf $(VENV) neuronx.sqlite3 .test.sqlite3 staticfiles
