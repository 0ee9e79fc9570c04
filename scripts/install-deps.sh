#!/bin/sh
# Installs herd's build and test dependencies from Debian 12's packages.
set -e
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
PKGS="build-essential pkg-config libpcre2-dev libcjson-dev libmicrohttpd-dev clang libclang-rt-14-dev"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
# Headless Chromium for tests/cli_web.sh (the chat page); without recommends it is small.
if ! dpkg -s chromium >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium ||
        echo "install-deps: chromium could not be installed; tests/cli_web.sh will be skipped" >&2
fi

# ---- optional: the openai npm client used by tests/cli_serve.sh ------------------
# Only when npm is installed; without it the serve test prints SKIP for that part.
if command -v npm >/dev/null 2>&1; then
    ( cd "$(dirname "$0")/../tests/openai_client" &&
      if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi ) ||
        echo "install-deps: npm install for tests/openai_client failed; the openai client test will be skipped" >&2
fi
