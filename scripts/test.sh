#!/usr/bin/env bash
# Run the whole suite against real parts. Fails loudly, including when no test ran.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-chromium.sh || exit 1
.venv/bin/promptly train || { echo "test: training the Rasa model failed" >&2; exit 1; }
.venv/bin/pytest "$@"
status=$?
if [[ $status -eq 5 ]]; then
    echo "test: pytest collected no tests: the test setup is broken" >&2
    exit 1
fi
exit $status
