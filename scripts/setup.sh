#!/usr/bin/env bash
# Create or refresh the two virtual environments Promptly needs:
#   .venv       Python 3.11: gateway, knowledge base, actions, tests (torch CPU first)
#   .venv-rasa  Python 3.10: Rasa Open Source 3.6 alone (it pins old numpy/pydantic)
# Each is rebuilt only when what it installs changed (a stamp file holds a hash).
set -euo pipefail
cd "$(dirname "$0")/.."

RASA_REQUIREMENT="rasa==3.6.21"
TORCH_REQUIREMENT="torch==2.13.0"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

# find_python 3.10 -> path of a working interpreter of that version, or nothing.
find_python() {
    local version="$1" candidate
    local candidates=("python$version")
    if command -v pyenv >/dev/null 2>&1; then
        local root; root="$(pyenv root)"
        candidates+=("$root"/versions/"$version"*/bin/python"$version")
    fi
    candidates+=("$HOME"/.pyenv/versions/"$version"*/bin/python"$version"
                 /usr/bin/python"$version" /usr/local/bin/python"$version")
    for candidate in "${candidates[@]}"; do
        # pyenv shims exist for versions that are not selected: run it to be sure.
        if "$candidate" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$version'.split('.')))" \
            >/dev/null 2>&1; then
            command -v "$candidate" 2>/dev/null || echo "$candidate"
            return 0
        fi
    done
    return 1
}

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

venv_main() {
    local py stamp
    py="$(find_python 3.11)" || die "Python 3.11 is required for the gateway. Install it (e.g. 'pyenv install 3.11' or 'apt-get install python3.11 python3.11-venv') and run make again."
    stamp="$(echo "$TORCH_REQUIREMENT" | cat - pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
    if [[ -x .venv/bin/python && "$(cat .venv/.promptly-stamp 2>/dev/null)" == "$stamp" ]]; then
        return 0
    fi
    say "Setting up .venv (Python 3.11: $py)"
    [[ -x .venv/bin/python ]] || "$py" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    # torch first and pinned: a looser requirement would pull multi-GB CUDA wheels.
    .venv/bin/python -m pip install --quiet "$TORCH_REQUIREMENT"
    .venv/bin/python -m pip install --quiet -e ".[dev]"
    echo "$stamp" > .venv/.promptly-stamp
}

venv_rasa() {
    local py stamp
    py="$(find_python 3.10)" || die "Python 3.10 is required for Rasa 3.6 and none was found (looked for python3.10 on PATH and in pyenv). Install it, e.g. 'pyenv install 3.10' (then re-run make), or 'apt-get install python3.10 python3.10-venv' where your distribution has it."
    stamp="$(echo "$RASA_REQUIREMENT" | sha256sum | cut -c1-16)"
    if [[ -x .venv-rasa/bin/rasa && "$(cat .venv-rasa/.promptly-stamp 2>/dev/null)" == "$stamp" ]]; then
        return 0
    fi
    say "Setting up .venv-rasa (Python 3.10: $py) with $RASA_REQUIREMENT; this takes a few minutes"
    [[ -x .venv-rasa/bin/python ]] || "$py" -m venv .venv-rasa
    .venv-rasa/bin/python -m pip install --quiet --upgrade pip
    .venv-rasa/bin/python -m pip install --quiet "$RASA_REQUIREMENT"
    echo "$stamp" > .venv-rasa/.promptly-stamp
}

venv_main
venv_rasa
