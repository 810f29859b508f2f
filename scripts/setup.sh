#!/usr/bin/env bash
# Sets up the checkout on first use: a virtual environment .venv with pot_torch installed editable, with the
# torch, test and ray extras. scripts/demo and scripts/test call it first; it is quick when already done: a stamp
# in .venv records a hash of what the install depends on (pyproject.toml, setup.cfg, the extras, the
# checkout's path), and pip runs again only when that changed. PYTHON=/path/to/python3.X picks the Python
# (default: python3, 3.9 or newer). pip's output goes to stderr.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.pot_torch_setup"
extras="torch,test,ray"
python="${PYTHON:-python3}"

wanted="$( { cat "$root/pyproject.toml" "$root/setup.cfg"; echo "$extras $root"; } | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
        echo "setup: pot_torch needs Python 3.9 or newer; '$python' is missing or older." \
             "Install python3 or set PYTHON=/path/to/python3.X" >&2
        exit 1
    fi
    echo "setup: creating the virtual environment $venv" >&2
    existed=$([[ -e "$venv" ]] && echo yes || echo no)
    if ! "$python" -m venv "$venv" >&2; then
        [[ "$existed" == yes ]] || rm -rf "$venv"  # remove only a half-made .venv this call created
        echo "setup: '$python -m venv' failed; on Debian/Ubuntu install it with: apt-get install python3-venv" >&2
        exit 1
    fi
fi
echo "setup: installing pot_torch[$extras] into .venv (the first time downloads PyTorch: a few minutes)" >&2
"$venv/bin/python" -m pip install -e "$root[$extras]" >&2
echo "$wanted" > "$stamp"
echo "setup: done" >&2
