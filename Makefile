# The project's vocabulary. `make run` and `make test` work on a fresh machine
# with nothing but Python 3.11: they create the virtualenv themselves.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed-$(shell cat requirements.txt constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install run test audit lint bench e2e messages migrate seed-national clean

$(INSTALLED): requirements.txt constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(INSTALLED)
	@$(PY) scripts/compilemessages.py

migrate: install
	$(PY) manage.py migrate --noinput

# Migrate, seed the demo network (idempotent), start every process, print the
# URL and demo logins. Ctrl-C stops them all.
run: migrate
	$(PY) manage.py seed_network
	$(PY) scripts/run.py

test: audit
	$(PY) -m ruff check .
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest $(PYTEST_ARGS)

# Risky code in our source (bandit; configured in pyproject.toml, each finding fixed or
# justified with `# nosec BXXX` beside it) and known-vulnerable dependencies (pip-audit
# over the virtualenv built from requirements.txt; scripts/audit_dependencies.py says
# when it fails). `make test` runs it first.
audit: install
	$(PY) -m bandit -c pyproject.toml -r . -q
	$(PY) scripts/audit_dependencies.py

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: install
	$(PY) bench/run_all.py

# The browser tests only (Debian's Chromium, headless); screenshots land in
# tests/e2e/screenshots/. They skip when Chromium is not installed.
e2e: install
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

messages: install
	$(PY) manage.py makemessages -l vi --ignore '.venv/*' --ignore 'tests/*' --ignore 'bench/*'
	$(PY) scripts/compilemessages.py

seed-national: migrate
	$(PY) manage.py seed_network --facilities 1500 --doctors 20000 --patients 100000

clean:
	rm -rf $(VENV) data staticfiles
