#!/usr/bin/env bash
# Browser tests drive Debian's Chromium with Playwright (never `playwright install`, which
# downloads browsers). Install it when missing and we are allowed to.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "==> Installing Debian's chromium for the browser tests" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    exit 0
fi
echo "ensure-chromium: the browser tests need Debian's 'chromium' package: apt-get install chromium" >&2
exit 1
