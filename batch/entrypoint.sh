#!/bin/sh
# Container entrypoint: run from the package folder so the notebook is found, then hand over.
set -eu
cd /opt/wcembed
exec "$@"
