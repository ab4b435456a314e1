#!/usr/bin/env bash
# Install the toolchains that build filters in languages other than Rust: one script per language in
# scripts/toolchains/ (pinned versions, from PyPI, npm, crates.io or Debian; idempotent: a second run only checks).
# Everything goes under $REDRIVE_TOOLS_DIR (default /var/tmp/redrive-tools), so it survives between CI runs.
#
#   scripts/guest-toolchains.sh               # every language
#   scripts/guest-toolchains.sh go python     # only these
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
all=(c zig go python js assemblyscript)

say() { printf '\033[1mguest-toolchains:\033[0m %s\n' "$*" >&2; }

langs=("$@")
[ "${#langs[@]}" -gt 0 ] || langs=("${all[@]}")
failed=()
for lang in "${langs[@]}"; do
    [ "$lang" = ts ] && lang=js # TypeScript is built with the JavaScript toolchain plus tsc
    script="$repo/scripts/toolchains/$lang.sh"
    [ -f "$script" ] || { say "no toolchain script for '$lang' (known: ${all[*]})"; exit 2; }
    started=$SECONDS
    say "$lang ($script)"
    if bash "$script" </dev/null >&2; then
        say "$lang ready ($((SECONDS - started)) s)"
    else
        say "$lang FAILED (see the lines above)"
        failed+=("$lang")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    say "could not install: ${failed[*]}"
    exit 1
fi
