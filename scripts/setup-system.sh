#!/usr/bin/env bash
# System tools the tests and the demo need beyond PyPI: MapServer (local WMS),
# Chromium (map screenshots) and the map's JavaScript from npm (served offline
# in place of the CDNs). Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mapserv >/dev/null || need+=(mapserver-bin cgi-mapserver)
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "missing system packages: ${need[*]} (install them with your package manager)" >&2
        exit 1
    fi
    echo "installing ${need[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -d .cache/js/node_modules ] || ! cmp -s scripts/package.json .cache/js/package.json; then
    mkdir -p .cache/js
    cp scripts/package.json .cache/js/
    (cd .cache/js && npm install --silent --no-audit --no-fund >/dev/null)
fi
