# The whole set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test packages install install-test unit integration lint bench clean docker images e2e mutate \
	mutate-in-process mutate-subprocess wheel

$(PY):
	$(PYTHON) -m venv $(VENV)

# Editable installs, so the tests exercise this tree; the marker files make reruns instant.
# The distribution is shim-secrets; a venv made before the rename still holds "shim", which
# would own the same module and command, so it goes first.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) uninstall -y shim 2>/dev/null || true
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) uninstall -y shim 2>/dev/null || true
	$(PIP) install -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	bash demo/demo.sh

# The wheel to install by path until shim-secrets is on the package index (README, "Install"):
# dist/shim_secrets-<version>-py3-none-any.whl. WHEEL_FLAGS passes pip options (an offline
# build: --no-index --no-build-isolation, with setuptools already in the venv).
WHEEL_FLAGS ?=
wheel: | $(PY)
	rm -rf build dist/shim_secrets-*.whl
	$(PY) -m pip --disable-pip-version-check wheel -q --no-deps $(WHEEL_FLAGS) -w dist .
	rm -rf build
	@ls dist/shim_secrets-*.whl

# The real Docker Engine, the Compose v2 plugin and the local base image that tests/e2e use.
# Needs root; elsewhere the e2e tests skip loudly (under CI=true they fail instead).
docker:
	@if [ "$$(id -u)" = 0 ]; then bash scripts/docker-up.sh && bash scripts/base-image.sh; \
	else echo "make docker: not root, skipping the Docker set-up (tests/e2e will skip)"; fi

# Debian's age, gnupg and postgresql for the real-server tier (tests/real).
packages:
	bash scripts/test-packages.sh

test: install-test docker packages
	$(PY) -m pytest -q

# The shim bundle and example images (docs/images.md). Pulls the official bases from Docker Hub;
# BASE_IMAGE=shim-base:bookworm make images builds on the local base, without a registry.
images: install
	bash images/build.sh

e2e: install-test docker
	$(PY) -m pytest -q -m docker tests/e2e

# The figures of docs/performance.md (how long a run takes: its "Reproduce"; BENCH_ARGS=--quick:
# fewer runs, no Docker).
bench: install-test docker
	$(PY) bench/run_all.py $(BENCH_ARGS)

# Mutation testing (docs/testing.md), both halves: the in-process tests (mutmut) and the code
# only subprocess tests reach (scripts/mutate_subprocess.py).
mutate: mutate-in-process mutate-subprocess

# mutmut over the modules [tool.mutmut] in pyproject.toml names, with the in-process tests it
# names; `mutmut browse` or `mutmut show NAME` afterwards.
# MUTANTS picks mutants by name (module.x_function__mutmut_N, globs allowed): by default every
# function of the covered modules, and only the pure functions of render.py and refs.py, whose
# other functions no in-process test reaches. E.g. make mutate-in-process MUTANTS='shim.delivery.privileges*'.
MUTANTS ?= shim.syntax.placeholders* shim.pipeline.environment* shim.pipeline.plan* shim.delivery.privileges* shim.pipeline.decoding* \
	shim.delivery.ciexport* shim.delivery.render.x_check_names* shim.delivery.render.x__printable* \
	shim.delivery.render.x_contained_path* shim.delivery.render.x_format_env_file* shim.delivery.render.x__shell_quote* \
	shim.delivery.render.x__dotenv_quote* shim.syntax.refs.x__malformed* shim.syntax.refs.x__syntax_of* \
	shim.syntax.refs.x__spelling_of*
MUTATE_CHILDREN ?= 2
mutate-in-process: install-test
	$(PIP) install 'mutmut>=3.3,<4'
	rm -rf mutants
	HYPOTHESIS_PROFILE=mutate $(VENV)/bin/mutmut run --max-children $(MUTATE_CHILDREN) $(MUTANTS)
	$(VENV)/bin/mutmut results | grep -v ': not checked$$' || true

# resolve, launch, supervise, initloop, watch, helper, asfiles and the providers, reached only
# by tests that run shim as a process: each sampled mutant is applied to a copy of the tree whose
# interpreter every child imports, then that module's tests run (nice -n 19, a timeout each).
# MUTATE_MODULES picks modules (short names: launch watch vault/auth...), MUTATE_PER_MODULE the
# sample's size, MUTATE_SEED the sample; the outcome of each mutant goes to mutants/subprocess.json.
MUTATE_MODULES ?=
MUTATE_PER_MODULE ?= 8
MUTATE_SEED ?= 31
mutate-subprocess: install-test
	nice -n 19 $(PY) scripts/mutate_subprocess.py --per-module $(MUTATE_PER_MODULE) \
		--seed $(MUTATE_SEED) $(if $(MUTATE_MODULES),--modules $(MUTATE_MODULES))

unit: install-test
	$(PY) -m pytest -q tests/unit

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info mutants
