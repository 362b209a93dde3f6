#!/usr/bin/env bash
# Headless Chromium for the console's end-to-end tests (tests/test_console.py),
# from the OS packages: Playwright drives /usr/bin/chromium and never downloads
# a browser of its own.
#
# Usage: deploy/local/chromium.sh install
set -euo pipefail

# shellcheck source=deploy/local/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

CHROMIUM=/usr/bin/chromium

install_chromium() {
    if [[ -x "${CHROMIUM}" ]]; then
        return 0
    fi
    apt_install chromium "${CHROMIUM}"
    [[ -x "${CHROMIUM}" ]] || die "apt-get installed chromium but ${CHROMIUM} is missing"
}

case "${1:-}" in
    install) install_chromium ;;
    *) die "usage: $0 install" ;;
esac
