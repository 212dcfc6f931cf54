# Everything heavy (the Python environment, the Weaviate and Helm binaries) is cached outside the
# checkout, keyed by the hash of what defines it, so reruns are fast and a new machine still works.
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
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

WEAVIATE_VERSION ?= v1.39.0
WEAVIATE_BIN ?= $(CACHE_ROOT)/weaviate-$(WEAVIATE_VERSION)/weaviate-server
export WEAVIATE_BIN

# helm, kubernetes-validate, hadolint and docker-compose for tests/deploy: versions live in the script,
# which installs them under $(CACHE_ROOT)/deploy-tools (one folder per version) and prints their bin dir.
DEPLOY_TOOLS_BIN := $(shell CACHE_ROOT="$(CACHE_ROOT)" bash scripts/deploy_tools.sh --bin-dir)
export IBV_DEPLOY_TOOLS := $(DEPLOY_TOOLS_BIN)

PROTO_OUT := imagebind_vectorizer/server/proto_gen
PYTEST_ARGS ?=

.PHONY: help env test lint unit proto proto-check weaviate system-deps demo serve bench clean-env \
	deploy-tools deploy-test

help:  ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# No file prerequisites: the folder name already holds the hash of everything that defines the
# environment, and file times would wipe an environment that several checkouts (git worktrees, whose
# files are newer than it) share.
$(VENV)/.ready:
	rm -rf "$(VENV)"
	mkdir -p "$(CACHE_ROOT)"
	$(PYTHON) -m venv "$(VENV)"
	$(PY) -m pip install --quiet --upgrade pip
	$(PYTHON) scripts/python_deps.py test bench > "$(VENV)/requirements.txt"
	$(PY) -m pip install --quiet -r "$(VENV)/requirements.txt" -r requirements/reference.txt
	$(PY) -m pip install --quiet --no-deps -r requirements/reference-nodeps.txt
	touch "$@"

env: $(VENV)/.ready system-deps  ## create (or reuse) the cached Python environment

system-deps:  ## shared FFmpeg libraries the reference's torchaudio.load (torchcodec) needs; tests only
	@if ! ldconfig -p | grep -q 'libavcodec\.so'; then \
		echo "installing FFmpeg shared libraries (apt)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends \
			libavcodec59 libavformat59 libavutil57 libswresample4 libswscale6 libavdevice59 libavfilter8 >/dev/null; \
	fi

$(WEAVIATE_BIN):
	@command -v go >/dev/null || { echo "Go >= 1.26 is needed to build Weaviate (https://go.dev/dl)"; exit 1; }
	mkdir -p "$(dir $@)"
	@echo "building weaviate-server $(WEAVIATE_VERSION) from its Go module (first run only)"
	CGO_ENABLED=0 GOBIN="$(dir $@)" GOFLAGS=-trimpath go install -tags netgo \
		github.com/weaviate/weaviate/cmd/weaviate-server@$(WEAVIATE_VERSION)

weaviate: $(WEAVIATE_BIN)  ## build (or reuse) the Weaviate server binary

deploy-tools:  ## build (or reuse) helm, kubernetes-validate, hadolint, docker-compose for tests/deploy
	CACHE_ROOT="$(CACHE_ROOT)" PYTHON="$(PYTHON)" bash scripts/deploy_tools.sh >/dev/null

lint: env  ## ruff
	$(PY) -m ruff check imagebind_vectorizer tests bench scripts

proto: env  ## regenerate the gRPC code from proto/
	$(PY) scripts/gen_proto.py --out $(PROTO_OUT)

proto-check: env  ## fail if the committed gRPC code is stale (differs from a fresh generation)
	$(PY) scripts/gen_proto.py --out $(PROTO_OUT) --check

test: env weaviate deploy-tools lint  ## every test (creates the environment first)
	status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$status

unit: env deploy-tools  ## tests that need no Weaviate server
	$(PY) -m pytest -m "not weaviate" $(PYTEST_ARGS)

deploy-test: env deploy-tools  ## only the Docker, compose and Helm validation (tests/deploy)
	$(PY) -m pytest -m deploy tests/deploy $(PYTEST_ARGS)

demo: env weaviate  ## the README's main command: our server + a local Weaviate + every near* query
	$(PY) -m imagebind_vectorizer demo $(ARGS)

serve: env  ## run the server (pass flags with ARGS="...")
	$(PY) -m imagebind_vectorizer serve $(ARGS)

bench: env  ## the benchmark harness (pass flags with ARGS="...")
	$(PY) -m bench.run $(ARGS)

clean-env:  ## drop the cached environment of this dependency set
	rm -rf "$(VENV)"
