# The two commands: `make run` (the service on its embedded defaults) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export FLASK_APP := diary

# CloudFormation templates, linted once deploy/ has any.
CFN_TEMPLATES = $(wildcard deploy/*.yaml deploy/*.yml)

.PHONY: run test lint format check-migrations install clean translations
.PHONY: bench resilience image

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

install: $(STAMP)

# A random SECRET_KEY for this checkout, written once and kept (instance/ is
# git-ignored), so sessions survive restarts and the `flask --app diary ...`
# commands `make run` prints work as printed. Production takes SECRET_KEY from
# the environment and refuses to start without it.
instance/config.py:
	@mkdir -p instance
	@umask 077 && $(PYTHON) -c 'import secrets; print(f"SECRET_KEY = {secrets.token_hex(32)!r}")' > $@
	@echo "wrote $@ with a random SECRET_KEY"

## run: set up, migrate the embedded SQLite database and serve on http://127.0.0.1:8080
run: $(STAMP) instance/config.py
	FLASK_DEBUG=1 $(BIN)/flask db upgrade
	@echo
	@echo "diary on http://127.0.0.1:8080 (SQLite and photos in ./instance)"
	@echo "Create an account and an API token in another terminal:"
	@echo "  $(BIN)/flask --app diary users create you@example.com"
	@echo "  $(BIN)/flask --app diary tokens create you@example.com --name laptop"
	@echo
	FLASK_DEBUG=1 $(BIN)/flask run --host 127.0.0.1 --port $${PORT:-8080}

## test: set up, lint, check migrations for drift, run the whole suite
test: $(STAMP) lint check-migrations
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian's Go toolchain and the sources bench/original builds against (GOPATH mode, no downloads).
BENCH_GO_PACKAGES = golang-go golang-github-lib-pq-dev golang-github-jinzhu-gorm-dev \
	golang-github-aws-aws-sdk-go-dev

## bench: diary and the original Go service side by side under wrk, with targets (not in `make test`)
bench: $(STAMP)
	@command -v $${WRK:-wrk} >/dev/null || { echo "installing wrk (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	@missing=$$(for package in $(BENCH_GO_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$package 2>/dev/null | grep -q 'ok installed' || echo $$package; \
	done); \
	[ -z "$$missing" ] || { echo "installing" $$missing "(Debian packages)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
		|| echo "could not install Go: the bench shows the Go service's recorded figures"; }
	$(BIN)/python -m bench $(BENCH_ARGS)

## image: only the test that builds the image with buildah and boots it (`make test` runs it too; root)
image: $(STAMP)
	$(BIN)/python -m pytest -m image tests/test_image_build.py $(PYTEST_ARGS)

## resilience: the resilience suite with the full 60 s load phases (`make test` runs it for 10 s)
resilience: $(STAMP)
	RESILIENCE_SECONDS=$${RESILIENCE_SECONDS:-60} $(BIN)/python -m pytest -m resilience tests/resilience $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile
	$(if $(CFN_TEMPLATES),$(BIN)/cfn-lint $(CFN_TEMPLATES))

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# `flask db check` against a fresh database built by the migrations: the models
# and the migrations must agree.
check-migrations: $(STAMP)
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && \
	DATABASE_URL=sqlite:///$$tmp/check.sqlite3 FLASK_DEBUG=1 $(BIN)/flask db upgrade >/dev/null 2>&1 && \
	DATABASE_URL=sqlite:///$$tmp/check.sqlite3 FLASK_DEBUG=1 $(BIN)/flask db check

## translations: re-extract the page strings, merge them into each language, compile the .mo
# The compiled .mo files are committed, so installing needs no build step.
translations: $(STAMP)
	$(BIN)/pybabel extract -F diary/translations/babel.cfg -k lazy_gettext -k _l -k N_ \
		-k InvalidInput:2 -k UnsupportedMedia:2 -k ContentTooLarge:2 -k NotFound:2 -k Phrase \
		--no-location --sort-output --omit-header -o diary/translations/messages.pot .
	$(BIN)/pybabel update -i diary/translations/messages.pot -d diary/translations \
		--no-fuzzy-matching --ignore-obsolete
	$(BIN)/pybabel compile -d diary/translations --statistics

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
