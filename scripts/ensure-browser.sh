#!/usr/bin/env bash
# Make the console's browser test runnable: Debian's chromium (and a CJK
# font, so the Chinese labels render in screenshots) from apt, and the
# test's driver, playwright-core, from npm (tests/console/package-lock.json).
# playwright-core drives the system browser and downloads none.
#
#   scripts/ensure-browser.sh        # then: node tests/console/browser.mjs
#
# Needs root (or sudo) only when a Debian package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
fc-list 2>/dev/null | grep -qi 'wenquanyi\|noto sans cjk' || need+=(fonts-wqy-microhei)
if [ ${#need[@]} -gt 0 ]; then
  echo "ensure-browser: installing ${need[*]} (apt)" >&2
  sudo=
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
/usr/bin/chromium --version

# The lock file must name only registry packages (no git, file or tarball URLs).
if grep -E '"resolved"' tests/console/package-lock.json | grep -vq '"https://registry.npmjs.org/'; then
  echo "ensure-browser: tests/console/package-lock.json resolves a package outside registry.npmjs.org" >&2
  exit 1
fi
# Install (or refresh) exactly what the lock file says; playwright-core has
# no install script and fetches no browser.
if ! node -e 'require.resolve("playwright-core", {paths: ["tests/console"]}); const v = require("./tests/console/node_modules/playwright-core/package.json").version; const want = require("./tests/console/package-lock.json").packages["node_modules/playwright-core"].version; process.exit(v === want ? 0 : 1)' 2>/dev/null; then
  echo "ensure-browser: npm ci in tests/console" >&2
  (cd tests/console && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts)
fi
echo "ensure-browser: chromium and playwright-core ready"
