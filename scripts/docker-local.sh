#!/usr/bin/env bash
# Build the AWS Batch worker image with a local Docker engine and run one column of the sample in it,
# as an array index of a Batch job would, writing to a local S3 API (moto). Prints the image size and
# the checked output. Outside `make test` (minutes): `make docker-local`. Needs root on Debian/Ubuntu.
#
# No registry image is reachable here, so the base is made with debootstrap (Debian bookworm, its
# Python 3.11 and venv) and the image's torch==2.13.0 is this machine's CPU wheel, served to the build
# as WHEELS_URL. The production build uses python:3.11-slim-bookworm and PyPI's CUDA wheel instead.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DOCKER=${DOCKER:-/usr/bin/docker}      # Debian's client matches its engine (a newer client may need buildx)
BASE=local/python:3.11-bookworm
IMAGE=${IMAGE:-wcembed:local}
WORK=.cache/docker-local

# The Debian archive debootstrap fetches from: $MIRROR, else the machine's own apt configuration (the first
# Debian archive, not -security, in /etc/apt: deb822 `URIs:` lines, then one-line `deb` entries).
apt_debian_archive() {
    local f
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk '$1 == "URIs:" { for (i = 2; i <= NF; i++) print $i }
             $1 == "deb" { opt = 0                      # skip an [option ...] block, then the URI
                           for (i = 2; i <= NF; i++) {
                               if ($i ~ /^\[/) opt = 1
                               if (!opt) { print $i; break }
                               if ($i ~ /\]$/) opt = 0 } }' "$f"
    done | grep -E '/debian/?$' | head -n 1
}
MIRROR=${MIRROR:-$(apt_debian_archive)}
if [ -z "$MIRROR" ]; then
    echo "error: no Debian archive in this machine's apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/);" \
        "set MIRROR=<url of a Debian archive>" >&2
    exit 1
fi
echo "Debian archive for the base image: $MIRROR"
mkdir -p "$WORK"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# 1. engine
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null
fi
if ! "$DOCKER" info >/dev/null 2>&1; then
    dockerd --iptables=false --ip6tables=false --bridge=none >"$WORK/dockerd.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 1; done
fi

# 2. base image: Debian bookworm with python3 and venv; the host's CA bundle (its TLS proxy included) for pip
if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log"
    cp /etc/ssl/certs/ca-certificates.crt "$WORK/rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
    tar -C "$WORK/rootfs" -c . | "$DOCKER" import --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' - "$BASE" >/dev/null
    rm -rf "$WORK/rootfs"
fi

# 3. the image, torch from this machine's CPU wheel
torch=$("$PY" -c "import re; print(re.search(r'^torch==(.+)$', open('requirements/worker.txt').read(), re.M)[1])")
mkdir -p "$WORK/wheels"
cp -n /opt/wheels/torch-"$torch"+cpu-*.whl "$WORK/wheels/" 2>/dev/null || true
port=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$PY" -m http.server --bind 127.0.0.1 --directory "$WORK/wheels" "$port" >/dev/null 2>&1 &
pids+=($!)
start=$(date +%s)
"$DOCKER" build --network host -f batch/Dockerfile --build-arg "BASE=$BASE" \
    --build-arg "WHEELS_URL=http://127.0.0.1:$port/" -t "$IMAGE" . >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log"; exit 1; }
echo "built $IMAGE in $(( $(date +%s) - start )) s; size $("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
"$DOCKER" run --rm "$IMAGE" python -c "import torch, importlib.util as u; print('torch', torch.__version__, '| explore stack absent:', all(u.find_spec(m) is None for m in ('lancedb', 'leafmap', 'sklearn', 'jupyterlab')))"

# 4. one column of the sample, as array index 0 of a Batch job, into a local S3 API
[ -d outputs/sample/rgbnir/2020 ] || "$PY" -m wcembed sample --out outputs/sample
"$PY" scripts/docker_column.py --docker "$DOCKER" --image "$IMAGE" --tiles outputs/sample  # not exec: the trap stops dockerd
