#!/usr/bin/env bash
# System tools some tests need, from Debian's packages: chromium + chromedriver (the dashboard page
# tested in a real headless browser) and graphviz (task-graph images). Idempotent and quick when
# everything is there. It never fails the caller: if apt cannot install them, the tests that need
# them skip and say why.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v dot >/dev/null 2>&1 || need+=(graphviz)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        apt() { sudo -n "$@"; }
    else
        echo "browser.sh: not root and no sudo; not installing ${need[*]} (the tests needing them skip)" >&2
        exit 0
    fi
else
    apt() { "$@"; }
fi
echo "browser.sh: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt timeout 300 apt-get update -qq >/dev/null 2>&1 || echo "browser.sh: apt-get update failed; trying the cached lists" >&2
if ! apt timeout 900 apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
    echo "browser.sh: apt-get install ${need[*]} failed (the tests needing them skip)" >&2
fi
exit 0
