# Set-up and daily commands. `make run` and `make test` do everything on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1
VAR := var
export LLMPROXY_VAR_DIR ?= $(CURDIR)/$(VAR)
WORKERS ?= 2
DURATION ?= 600

.PHONY: run test lint bench venv secrets browser clean manage serve loadbalancer soak

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

# Local secrets for `make run`, generated once and kept in var/ (git-ignored).
$(VAR)/secret_key:
	mkdir -p $(VAR)
	$(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@
	chmod 600 $@

$(VAR)/encryption_key: $(VENV)/.installed
	mkdir -p $(VAR)
	$(PY) -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())" > $@
	chmod 600 $@

secrets: $(VAR)/secret_key $(VAR)/encryption_key

run: venv secrets
	SECRET_KEY_FILE=$${SECRET_KEY_FILE:-$(VAR)/secret_key} \
	LLMPROXY_ENCRYPTION_KEY_FILE=$${LLMPROXY_ENCRYPTION_KEY_FILE:-$(VAR)/encryption_key} \
	sh -c '$(PY) manage.py migrate --noinput -v0 && \
	       if [ -n "$$CONFIG" ]; then $(PY) manage.py apply_config "$$CONFIG"; else $(PY) manage.py bootstrap_demo; fi && \
	       exec $(VENV)/bin/daphne -b $(HOST) -p $(PORT) llmproxy.asgi:application'

# Any manage.py command against the `make run` set-up: make manage ARGS="create_tenant acme"
manage: venv secrets
	SECRET_KEY_FILE=$${SECRET_KEY_FILE:-$(VAR)/secret_key} \
	LLMPROXY_ENCRYPTION_KEY_FILE=$${LLMPROXY_ENCRYPTION_KEY_FILE:-$(VAR)/encryption_key} \
	$(PY) manage.py $(ARGS)

# HAProxy from Debian's packages: the load balancer of `make serve` and of the fleet tests.
loadbalancer:
	@command -v haproxy >/dev/null 2>&1 || { \
	  echo "installing Debian's haproxy for make serve and the fleet tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy) >/dev/null; }

# WORKERS Daphne processes behind HAProxy on HOST:PORT. `$(PY) deploy/fleet.py restart` replaces
# them without dropping a request; Ctrl-C (or `deploy/fleet.py stop`) stops gracefully.
serve: venv secrets loadbalancer
	SECRET_KEY_FILE=$${SECRET_KEY_FILE:-$(VAR)/secret_key} \
	LLMPROXY_ENCRYPTION_KEY_FILE=$${LLMPROXY_ENCRYPTION_KEY_FILE:-$(VAR)/encryption_key} \
	sh -c '$(PY) manage.py migrate --noinput -v0 && \
	       if [ -n "$$CONFIG" ]; then $(PY) manage.py apply_config "$$CONFIG"; else $(PY) manage.py bootstrap_demo; fi && \
	       exec $(PY) deploy/fleet.py serve --workers $(WORKERS) --bind $(HOST):$(PORT)'

# Two proxies on PostgreSQL + Redis under a mixed load for DURATION seconds (not in CI).
soak: venv secrets loadbalancer
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/llmproxy_soak} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/0} \
	$(PY) -m bench.soak --duration $(DURATION)

# The benchmark (bench/README.md): nginx and wrk from Debian when missing, LiteLLM into bench/.venv-litellm,
# its own database llmproxy_bench and Redis keys lpbench:*. Results in bench/results/. Options: BENCH_ARGS="--help".
bench: venv
	$(PY) -m bench.run $(BENCH_ARGS)

# Headless Chromium for the admin end-to-end tests, from Debian's packages.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; }

test: venv browser loadbalancer
	$(PY) manage.py makemigrations --check --dry-run --settings=llmproxy.settings_test >/dev/null
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) $(VAR)
