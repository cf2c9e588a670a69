#!/bin/sh
# The browser the web-app tests drive (tests/test_app_browser.py): Debian's Chromium, headless,
# through Playwright for Python (no browser download). Installed with apt-get when missing and this
# runs as root (CI, fresh machines); otherwise it says what to install.
set -eu
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null
    apt-get install -y -qq chromium </dev/null >/dev/null
    exit 0
fi
echo "error: the browser tests need Chromium: sudo apt-get install chromium (Debian/Ubuntu)" >&2
exit 1
