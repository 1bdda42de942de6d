#!/usr/bin/env bash
# CI: make .venv-lava, a Python 3.10 environment with Intel's lava-nc 0.10.0, in which
# drivers/loihi/lava_worker.py runs real Lava for the `lava` back end of the `loihi` driver
# (tests/test_loihi_lava.py compares it bit for bit with the emulator). See docs/loihi.md.
#
# - lava-nc 0.10.0 declares Python >= 3.10, < 3.11 and fails to import on 3.11 (a dataclass
#   mutable default), so it gets a venv of its own built from a 3.10 interpreter (the machine
#   image ships pyenv's 3.10.13). labbench is NOT installed there: the worker script needs
#   numpy and lava only. Where no Python 3.10 exists this script says so and exits 0 having
#   created nothing (the Lava tests then skip with that reason).
# - numpy<2: lava-nc 0.10 needs numpy 1.x.
# - Idempotent: a second run that finds .venv-lava complete (lava-nc at the pinned version,
#   its LIF process importable) does nothing and takes about a second.
#
# Environment:
#   LABBENCH_LAVA_BASE_PYTHON   interpreter to build the venv from (default: searched, below)
#   LABBENCH_LAVA_VENV          where to make it (default: .venv-lava at the repository root)
#   LABBENCH_LAVA_VERSION       lava-nc version to pin (default: 0.10.0)
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."

venv="${LABBENCH_LAVA_VENV:-.venv-lava}"
lava_version="${LABBENCH_LAVA_VERSION:-0.10.0}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off

say() { echo "lava_venv: $*"; }

# --- already done? --------------------------------------------------------------------------
check_venv() {
    [ -x "$venv/bin/python" ] || return 1
    local py="$venv/bin/python"
    case "$py" in /*) ;; *) py="$PWD/$py" ;; esac
    (cd / && "$py" - "$lava_version" <<'EOF' >/dev/null 2>&1)
import sys
from importlib.metadata import version
assert sys.version_info[:2] == (3, 10)
assert version("lava-nc") == sys.argv[1], version("lava-nc")
import numpy
assert int(numpy.__version__.split(".")[0]) < 2
import lava.proc.lif.process, lava.proc.dense.process, lava.magma.core.run_configs  # noqa: F401
EOF
}
if check_venv; then
    say "$venv is ready ($("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])'), lava-nc $lava_version): nothing to do"
    exit 0
fi

# --- find a Python 3.10 ----------------------------------------------------------------------
is_310() {   # usable interpreter, exactly 3.10, with venv
    [ -n "$1" ] || return 1
    { [ -x "$1" ] || command -v "$1" >/dev/null 2>&1; } || return 1
    "$1" -c 'import sys, venv; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' >/dev/null 2>&1
}
candidates=()
[ -n "${LABBENCH_LAVA_BASE_PYTHON:-}" ] && candidates+=("$LABBENCH_LAVA_BASE_PYTHON")
if command -v pyenv >/dev/null 2>&1; then
    for p in "$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10; do candidates+=("$p"); done
fi
for p in "${HOME:-/nonexistent}"/.pyenv/versions/3.10*/bin/python3.10; do candidates+=("$p"); done
candidates+=(python3.10 python3)

base=""
for c in "${candidates[@]}"; do
    if is_310 "$c"; then base="$c"; break; fi
done
if [ -z "$base" ]; then
    say "no Python 3.10 found (tried: ${candidates[*]}); lava-nc $lava_version needs >= 3.10, < 3.11."
    say "skipping: nothing created; the Lava back end is unavailable and its tests will skip."
    exit 0
fi
base_path=$(command -v "$base" 2>/dev/null || echo "$base")
say "using $base_path (Python $("$base" -c 'import sys; print(sys.version.split()[0])'))"

# --- make / repair the venv ---------------------------------------------------------------------
if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' 2>/dev/null; then
    say "$venv exists but is not Python 3.10: removing it"
    rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    say "+ $base -m venv $venv"
    "$base" -m venv "$venv"
fi
say "+ $venv/bin/pip install -q 'numpy<2' lava-nc==$lava_version"
"$venv/bin/python" -m pip install -q "numpy<2" "lava-nc==$lava_version"

if ! check_venv; then
    say "$venv was made but lava-nc $lava_version does not import in it" >&2
    exit 1
fi
say "ready: $("$venv/bin/python" -c 'import sys; from importlib.metadata import version as v; print("Python", sys.version.split()[0] + ", numpy", v("numpy") + ", lava-nc", v("lava-nc"))')"
