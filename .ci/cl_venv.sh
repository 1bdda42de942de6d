#!/usr/bin/env bash
# CI: make .venv-cl, a Python >= 3.12 environment with Cortical Labs' cl-sdk 1.0 simulator
# and labbench itself (editable, with its dependencies), in which tests/cl_check.py
# exercises drivers/mea/cl_backend.py and a whole `labbench run` drives the simulator
# (tests/test_mea_cl.py runs both from the main test venv). See docs/mea-cl.md.
#
# - cl-sdk 1.0 needs Python >= 3.12; the project's own venv may be older, so this is a
#   second venv. Where no such interpreter exists, this script says so and exits 0 having
#   created nothing (the cl tests then skip with that reason).
# - cl-sdk is CC BY-NC 4.0: it is installed here, for tests, never as a labbench dependency.
# - Idempotent: a second run that finds .venv-cl complete (numpy + cl-sdk at the pinned
#   version, importable) does nothing and takes well under a second.
#
# Environment:
#   LABBENCH_CL_BASE_PYTHON   interpreter to build the venv from (default: searched, below)
#   LABBENCH_CL_VENV          where to make it (default: .venv-cl at the repository root)
#   LABBENCH_CL_SDK_VERSION   cl-sdk version to pin (default: 1.0.0)
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."

venv="${LABBENCH_CL_VENV:-.venv-cl}"
sdk_version="${LABBENCH_CL_SDK_VERSION:-1.0.0}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off

say() { echo "cl_venv: $*"; }

# --- already done? --------------------------------------------------------------------------
check_venv() {
    [ -x "$venv/bin/python" ] || return 1
    local repo="$PWD" py="$venv/bin/python"
    case "$py" in /*) ;; *) py="$repo/$py" ;; esac
    # from another directory: `import labbench` must find the installed one, not ./labbench
    (cd / && "$py" - "$sdk_version" "$repo" <<'EOF' >/dev/null 2>&1)
import sys
from importlib.metadata import version
assert sys.version_info >= (3, 12)
assert version("cl-sdk") == sys.argv[1], version("cl-sdk")
import numpy  # noqa: F401
import importlib.util
assert importlib.util.find_spec("cl") is not None
import pathlib
import labbench  # this checkout's labbench, installed editable
assert pathlib.Path(labbench.__file__).resolve().parent == pathlib.Path(sys.argv[2], "labbench").resolve()
EOF
}
if check_venv; then
    say "$venv is ready ($("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])'), cl-sdk $sdk_version): nothing to do"
    exit 0
fi

# --- find a Python >= 3.12 --------------------------------------------------------------------
is_312() {   # usable interpreter, >= 3.12, with venv
    [ -n "$1" ] && [ -x "$1" ] || command -v "$1" >/dev/null 2>&1 || return 1
    "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}
candidates=()
[ -n "${LABBENCH_CL_BASE_PYTHON:-}" ] && candidates+=("$LABBENCH_CL_BASE_PYTHON")
candidates+=(python3.12)
if command -v pyenv >/dev/null 2>&1; then
    for p in "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do candidates+=("$p"); done
fi
for p in "${HOME:-/nonexistent}"/.pyenv/versions/3.12*/bin/python3.12; do candidates+=("$p"); done
# newer minors only after every 3.12 (cl-sdk 1.0 needs >= 3.12; 3.12 is what it was tried on here)
candidates+=(python3.13)
for p in "${HOME:-/nonexistent}"/.pyenv/versions/3.13*/bin/python3.13; do candidates+=("$p"); done
candidates+=(python3)

base=""
for c in "${candidates[@]}"; do
    if is_312 "$c"; then base="$c"; break; fi
done
if [ -z "$base" ]; then
    say "no Python >= 3.12 found (tried: ${candidates[*]}); cl-sdk 1.0 needs one."
    say "skipping: nothing created; the cl-sdk simulator tests will skip."
    exit 0
fi
base_path=$(command -v "$base" 2>/dev/null || echo "$base")
base_version=$("$base" -c 'import sys; print(sys.version.split()[0])')
say "using $base_path (Python $base_version)"

# --- make / repair the venv ---------------------------------------------------------------------
if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
    say "$venv exists but is not Python >= 3.12: removing it"
    rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    say "+ $base -m venv $venv"
    "$base" -m venv "$venv"
fi
say "+ $venv/bin/pip install -q numpy cl-sdk==$sdk_version -e ."
"$venv/bin/python" -m pip install -q numpy "cl-sdk==$sdk_version" -e .

if ! check_venv; then
    say "$venv was made but cl-sdk $sdk_version or this checkout's labbench does not import in it" >&2
    exit 1
fi
say "ready: $("$venv/bin/python" -c 'import sys; from importlib.metadata import version as v; print("Python", sys.version.split()[0] + ", numpy", v("numpy") + ", cl-sdk", v("cl-sdk"))')"
say "installed in $venv: $("$venv/bin/python" -m pip list --format=freeze 2>/dev/null | wc -l) distributions"
