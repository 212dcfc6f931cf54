#!/usr/bin/env bash
# The shared Python environment (`make env`): created once per dependency set under the build cache,
# outside every checkout, and reused by every checkout whose dependency lists hash the same. A lock
# makes a second `make` wait for the first one's build instead of racing it (two installs into one
# folder corrupt it), and `.ready` is written last, so a half-built environment is never used.
#
# Usage: scripts/python_env.sh VENV        Environment: PYTHON (python3)
set -euo pipefail

venv=$1
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: Python >= 3.11 is needed ($PYTHON is $("$PYTHON" --version 2>&1 || echo missing)); set PYTHON=..." >&2
    exit 1
fi
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
if ! flock -n 9; then
    echo "waiting for another make to finish building the Python environment $venv ..." >&2
    flock 9
fi
[[ -e $venv/.ready ]] && exit 0

started=$SECONDS
cat <<MSG
== set-up: the Python environment (first run only) -> $venv
   About 7 minutes on 2 cores and 5.9 GB of disk, 4.1 GB of it CUDA libraries: PyPI's Linux torch wheels
   bring them even to a machine without a GPU (see README, "On a fresh machine"). Shared by every
   checkout with the same dependency lists. pip's own output follows.
MSG
rm -rf "$venv"
"$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$PYTHON" scripts/python_deps.py test bench > "$venv/requirements.txt"
"$venv/bin/python" -m pip install -r "$venv/requirements.txt" -r requirements/reference.txt
"$venv/bin/python" -m pip install --no-deps -r requirements/reference-nodeps.txt
touch "$venv/.ready"
echo "== the Python environment is ready ($(( (SECONDS - started + 59) / 60 )) min, $(du -sh "$venv" | cut -f1))"
