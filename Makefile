# Two commands on a fresh machine:  `make serve`  and  `make test`.
# Both create .venv (Python 3.11) with the exact pins of requirements.lock on first use.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: serve test lint protos bench clean-venv

$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/interp-server $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

protos: $(STAMP)
	$(VENV)/bin/python -m protos.generate

bench: $(STAMP)
	$(VENV)/bin/python -m benchmarks.run_all

clean-venv:
	rm -rf $(VENV)
