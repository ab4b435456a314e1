#!/usr/bin/env bash
# The browser the report and live-page tests drive: Debian's Chromium (headless), installed if missing, and
# playwright-core (pinned, from npm, under /var/tmp/redrive-tools/browser) to click the live page's buttons.
# Idempotent and quick when both are there. Prints nothing on success.
#
#   scripts/browser.sh
set -euo pipefail

say() { printf '\033[1mbrowser:\033[0m %s\n' "$*" >&2; }
die() { printf 'browser: %s\n' "$*" >&2; exit 1; }

PLAYWRIGHT_VERSION=1.64.1
tools="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}/browser"

if ! command -v chromium >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "chromium is missing and apt-get is not available: install Chromium yourself"
    [ "$(id -u)" = 0 ] || die "chromium is missing: install it (sudo apt-get install chromium) or run this script as root"
    say "installing chromium (Debian package, for the report and live-page tests)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; } ||
        die "could not install chromium"
    command -v chromium >/dev/null 2>&1 || die "chromium was installed but is not on PATH"
fi

if [ ! -f "$tools/node_modules/playwright-core/package.json" ] ||
    ! grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$tools/node_modules/playwright-core/package.json"; then
    command -v npm >/dev/null 2>&1 || die "npm is missing: the live-page test drives Chromium with playwright-core from npm"
    say "installing playwright-core $PLAYWRIGHT_VERSION (npm) into $tools"
    mkdir -p "$tools"
    (cd "$tools" && npm install --silent --no-audit --no-fund --no-save "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null) ||
        die "could not install playwright-core from npm"
fi
