#!/usr/bin/env bash
# CI: Debian's Chromium and chromedriver, for the headless browser check of the comparison
# report (tests/test_compare_report.py opens report.html in /usr/bin/chromium through
# /usr/bin/chromedriver; without them that one test skips and says how to install them).
#
# - Idempotent: nothing to do when /usr/bin/chromium and /usr/bin/chromedriver exist.
# - Never fails CI: where apt-get is missing, this user may not install, or the package mirror is
#   unreachable, it says why and exits 0 (the browser test then skips).
set -uo pipefail

say() { echo "chromium: $*"; }

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    say "$(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium) and chromedriver present: nothing to do"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    say "no apt-get here: not installing; the report's browser test will skip"
    exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        say "not root and no password-less sudo: not installing; the report's browser test will skip"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
install() { "${sudo[@]}" apt-get install -y -q --no-install-recommends chromium chromium-driver; }
say "+ apt-get install -y --no-install-recommends chromium chromium-driver"
if ! install >/tmp/labbench-chromium-apt.log 2>&1; then
    say "first try failed; + apt-get update"
    "${sudo[@]}" apt-get update -q >>/tmp/labbench-chromium-apt.log 2>&1
    if ! install >>/tmp/labbench-chromium-apt.log 2>&1; then
        say "apt-get could not install them (is the package mirror reachable?); last lines of its log:"
        tail -n 5 /tmp/labbench-chromium-apt.log | sed 's/^/chromium:   /'
        say "the report's browser test will skip"
        exit 0
    fi
fi
say "ready: $(/usr/bin/chromium --version 2>/dev/null), $(/usr/bin/chromedriver --version 2>/dev/null | head -n 1)"
exit 0
