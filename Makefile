# Everything heavy (the Python environment, the Weaviate and Helm binaries) is cached outside the
# checkout, keyed by the hash of what defines it, so reruns are fast and a new machine still works.
# Each first-time stage says what it is about to do, its size and how long it takes, and shows its
# tool's own progress; each takes a lock, so concurrent `make` runs wait for one build instead of
# racing it. The checkout gets only .venv, a few kilobytes layered over the shared environment
# (scripts/checkout_env.py), whose bin/ holds this checkout's `imagebind-vectorizer`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
CACHE_ROOT ?= $(HOME)/.cache/imagebind-vectorizer-build
# The environment's key: the dependency lists (not the rest of pyproject.toml: tool settings such as
# pytest markers do not change what is installed).
DEPS_HASH := $(shell { $(PYTHON) scripts/python_deps.py test bench; cat requirements/*.txt scripts/python_deps.py; } \
	| sha256sum | cut -c1-16)
VENV ?= $(CACHE_ROOT)/venv-$(DEPS_HASH)
# This checkout's own small environment over the shared one: its python runs this checkout's code.
CHECKOUT_ENV := $(CURDIR)/.venv
PY := $(CHECKOUT_ENV)/bin/python
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

WEAVIATE_VERSION ?= v1.39.0
WEAVIATE_BIN ?= $(CACHE_ROOT)/weaviate-$(WEAVIATE_VERSION)/weaviate-server
export WEAVIATE_BIN

# helm, kubernetes-validate, hadolint and docker-compose for tests/deploy: versions live in the script,
# which installs them under $(CACHE_ROOT)/deploy-tools (one folder per version) and prints their bin dir.
DEPLOY_TOOLS_BIN := $(shell CACHE_ROOT="$(CACHE_ROOT)" bash scripts/deploy_tools.sh --bin-dir)
export IBV_DEPLOY_TOOLS := $(DEPLOY_TOOLS_BIN)
# tests/test_setup.py checks that this checkout got its command
export IBV_CHECKOUT_ENV := $(CHECKOUT_ENV)

PROTO_OUT := imagebind_vectorizer/server/proto_gen
PYTEST_ARGS ?=

.PHONY: help env shell test lint unit proto proto-check weaviate system-deps demo serve bench clean-env \
	deploy-tools deploy-test

help:  ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# No file prerequisites: the folder name already holds the hash of everything that defines the
# environment, and file times would wipe an environment that several checkouts (git worktrees, whose
# files are newer than it) share. The script locks, announces itself and shows pip's output.
$(VENV)/.ready:
	@PYTHON="$(PYTHON)" bash scripts/python_env.sh "$(VENV)"

# Cheap (a fraction of a second): run every time, so .venv follows the shared environment's hash.
env: $(VENV)/.ready  ## create (or reuse) the cached Python environment and this checkout's .venv
	@$(PYTHON) scripts/checkout_env.py "$(VENV)"

shell: env  ## a shell with imagebind-vectorizer (and a built weaviate-server) on PATH (exit to leave)
	@echo "imagebind-vectorizer is $(CHECKOUT_ENV)/bin/imagebind-vectorizer; exit this shell to leave"
	@VIRTUAL_ENV="$(CHECKOUT_ENV)" PATH="$(CHECKOUT_ENV)/bin:$(dir $(WEAVIATE_BIN)):$$PATH" "$${SHELL:-bash}" -i

system-deps:  ## FFmpeg shared libraries for the tests' reference audio loader (apt: Debian family, root or sudo)
	@if ! ldconfig -p | grep -q 'libavcodec\.so'; then \
		echo "== set-up: FFmpeg shared libraries for the tests' reference audio loader (apt, about 40 MB, under" \
			"a minute; needs a Debian-family system and root or sudo)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -q -o DPkg::Lock::Timeout=600 \
			--no-install-recommends \
			libavcodec59 libavformat59 libavutil57 libswresample4 libswscale6 libavdevice59 libavfilter8; \
	fi

# The same build (lock, estimate, progress) as the demo's and the tests' when no binary is there.
$(WEAVIATE_BIN): | $(VENV)/.ready
	@$(VENV)/bin/python scripts/build_weaviate.py "$@" "$(WEAVIATE_VERSION)"

weaviate: $(WEAVIATE_BIN)  ## build (or reuse) the Weaviate server binary

deploy-tools:  ## build (or reuse) helm, kubernetes-validate, hadolint, docker-compose for tests/deploy
	@CACHE_ROOT="$(CACHE_ROOT)" PYTHON="$(PYTHON)" bash scripts/deploy_tools.sh >/dev/null

lint: env  ## ruff
	$(PY) -m ruff check imagebind_vectorizer tests bench scripts

proto: env  ## regenerate the gRPC code from proto/
	$(PY) scripts/gen_proto.py --out $(PROTO_OUT)

proto-check: env  ## fail if the committed gRPC code is stale (differs from a fresh generation)
	$(PY) scripts/gen_proto.py --out $(PROTO_OUT) --check

test: env system-deps weaviate deploy-tools lint  ## every test (creates the environment first)
	status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$status

unit: env system-deps deploy-tools  ## tests that need no Weaviate server
	$(PY) -m pytest -m "not weaviate" $(PYTEST_ARGS)

deploy-test: env system-deps deploy-tools  ## only the Docker, compose and Helm validation (tests/deploy)
	$(PY) -m pytest -m deploy tests/deploy $(PYTEST_ARGS)

demo: env weaviate  ## the README's main command: our server + a local Weaviate + every near* query
	$(CHECKOUT_ENV)/bin/imagebind-vectorizer demo $(ARGS)

serve: env  ## run the server (pass flags with ARGS="...")
	$(CHECKOUT_ENV)/bin/imagebind-vectorizer serve $(ARGS)

bench: env  ## the benchmark harness (pass flags with ARGS="...")
	$(PY) -m bench.run $(ARGS)

clean-env:  ## drop the cached environment of this dependency set (and this checkout's .venv)
	rm -rf "$(VENV)" "$(CHECKOUT_ENV)"
