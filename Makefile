# Two commands on a fresh machine:  `make serve`  and  `make test`.
# Both check for Fashion-MNIST first (installing the Debian package when allowed, see `datasets`),
# then create .venv (Python 3.11) with the exact pins of requirements.lock on first use.
# `make test` also installs the pinned checkers it runs: buf from the npm registry (`npm ci`,
# package-lock.json) and the docs site's tools in .venv-docs (requirements-docs.lock).
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
ARGS ?=
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist
FASHION_MNIST_PACKAGE := dataset-fashion-mnist
# auto: install the package when we may (root, or passwordless sudo); no: only check.
INSTALL_DATASETS ?= auto

DOCS_VENV := .venv-docs
DOCS_STAMP := $(DOCS_VENV)/.installed
BUF := node_modules/.bin/buf
BUF_BASELINE := protos/baseline.binpb

.PHONY: serve test test-fast lint typecheck imports proto-check proto-baseline docs docs-serve protos bench screenshots mutate datasets clean-venv

$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

# mkdocs, mkdocs-material and mkdocstrings: a venv of their own (see requirements-docs.lock's header).
$(DOCS_STAMP): requirements-docs.lock
	test -x $(DOCS_VENV)/bin/python || $(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install -q --disable-pip-version-check -r requirements-docs.lock
	touch $(DOCS_STAMP)

# buf, pinned in package-lock.json (the npm package carries the binary for this platform).
$(BUF): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(BUF)

# Fashion-MNIST (the LeNet tests, training, and the class-name sets of InterpolateFeatures):
# present -> nothing to do; missing -> `apt-get update` + install the Debian package when the user
# may, otherwise stop before anything else runs with the one command that fixes it.
datasets:
	@have() { for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do \
	    [ -f "$(FASHION_MNIST_DIR)/$$f.gz" ] || [ -f "$(FASHION_MNIST_DIR)/$$f" ] || return 1; done; }; \
	have && exit 0; \
	fix="sudo apt-get update && sudo apt-get install -y $(FASHION_MNIST_PACKAGE)"; \
	if [ "$(INSTALL_DATASETS)" != auto ] || ! command -v apt-get >/dev/null 2>&1; then sudo=none; \
	elif [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else sudo=none; fi; \
	if [ "$$sudo" = none ]; then \
	  echo "error: Fashion-MNIST is missing from $(FASHION_MNIST_DIR) and this user cannot install it." >&2; \
	  echo "Run:  $$fix   then run make again." >&2; exit 1; fi; \
	echo "Fashion-MNIST is missing from $(FASHION_MNIST_DIR): installing the Debian package $(FASHION_MNIST_PACKAGE)"; \
	$$sudo apt-get update -q && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(FASHION_MNIST_PACKAGE) \
	  || { echo "error: installing $(FASHION_MNIST_PACKAGE) failed; run:  $$fix" >&2; exit 1; }; \
	have || { echo "error: $(FASHION_MNIST_PACKAGE) is installed but $(FASHION_MNIST_DIR) still lacks the idx files" >&2; exit 1; }

# All four models: the LeNets at once; vgg16/alexnet download their published weights into the hub
# cache on first use (LOADING meanwhile). Offline: ARGS=--random-weights, or see docs/weights.md.
serve: datasets $(STAMP)
	$(VENV)/bin/interp-server $(ARGS)

test: datasets $(STAMP) $(BUF) $(DOCS_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(BUF) lint
	$(BUF) breaking --against $(BUF_BASELINE)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict
	$(VENV)/bin/python -m pytest -q $(ARGS)

# The fast tier (tests/conftest.py states the rule): the unit tests of each package and the
# repository-wide checks, on two pytest-xdist workers, a file per worker at a time; no server, no
# subprocess server, no browser. One torch thread per worker: two workers of two threads each on two
# cores spin against each other (measured: 4x the wall time). `make test` runs every tier.
FAST_TESTS := tests/interp tests/models tests/server tests/client tests/contract
XDIST ?= -n 2 --dist loadfile
test-fast: datasets $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/python -m pytest -q $(XDIST) $(FAST_TESTS) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy interp/ models/ server/ client/

# The import contracts of pyproject.toml ([tool.importlinter]).
imports: $(STAMP)
	$(VENV)/bin/lint-imports

# The wire contract: buf's lint rules (buf.yaml) and no breaking change against the baseline.
proto-check: $(BUF)
	$(BUF) lint
	$(BUF) breaking --against $(BUF_BASELINE)

# Move the baseline forward: only in the commit of a deliberate contract change.
proto-baseline: $(BUF)
	$(BUF) build -o $(BUF_BASELINE)

# The docs site: `make docs` builds site/ (failing on any warning, as `make test` does; not
# --quiet, which hides the warnings from the strict count);
# `make docs-serve` serves it with live reload on http://127.0.0.1:8000.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict

docs-serve: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

protos: $(STAMP)
	$(VENV)/bin/python -m protos.generate

bench: datasets $(STAMP)
	$(VENV)/bin/python -m benchmarks.run_all

# The docs' pictures of the explorer: the browser tests' screenshots (headless Chromium, Debian's
# chromium + chromium-driver), written into docs/images/explorer/.
screenshots: datasets $(STAMP)
	EXPLORER_SCREENSHOTS=docs/images/explorer $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/e2e/test_web_pages.py tests/e2e/test_web_lab.py tests/e2e/test_web_live.py tests/e2e/test_web_offline.py tests/e2e/test_web_own_model.py

# Mutation testing (mutmut, pinned in requirements.lock; not part of `make test` or CI): the bounded
# set of functions below, module by module. [tool.mutmut] in pyproject.toml names the oracle test
# files; each mutant runs only the tests that covered its function. Results: docs/testing.md.
MUTATE_CROPS := interp.dataset.crops.x_receptive_box__* interp.dataset.crops.x_clip_box__* interp.dataset.crops.x_crop_field__*
MUTATE_TOPK := interp.dataset.top_k.xǁTopKǁmerge_topk__* interp.dataset.top_k.x_unit_pass__* interp.dataset.top_k.xǁCandidatesǁ*
MUTATE_NEIGHBOURS := interp.dataset.neighbours.x_distances__* interp.dataset.neighbours.x_nearest__*
MUTATE_PICTURES := interp.embedding.x__to_pixels__* interp.embedding.x_scatter_image__* interp.embedding.x_atlas_image__* interp.embedding.x_sprite__*
MUTATE_EPSILON := interp.attacks.minimal_epsilon.x_scan_levels__* interp.attacks.minimal_epsilon.x_minimal_epsilon__*
MUTATE_FUNCTIONS := $(MUTATE_CROPS) $(MUTATE_TOPK) $(MUTATE_NEIGHBOURS) $(MUTATE_PICTURES) $(MUTATE_EPSILON)

# One mutmut run over all modules: its stats and clean passes (about 3 min here) are paid once.
mutate: datasets $(STAMP)
	@set -f; start=$$(date +%s); $(VENV)/bin/mutmut run --max-children 2 $(MUTATE_FUNCTIONS) || exit 1; \
	$(VENV)/bin/mutmut results; echo "mutate: $$(( $$(date +%s) - start )) s, load average $$(cut -d' ' -f1-3 /proc/loadavg)"

clean-venv:
	rm -rf $(VENV) $(DOCS_VENV) node_modules
