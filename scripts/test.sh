#!/usr/bin/env bash
# Install everything (system packages, Python packages) and run the whole test suite.
# Tests talk to a real PostgreSQL and Redis (DATABASE_URL, CELERY_BROKER_URL; defaults below) and start real
# Celery workers. Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/stats -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/readerstudy}"
export CELERY_BROKER_URL="${CELERY_BROKER_URL:-redis://127.0.0.1:6379/15}"
# torch has a CPU build pinned here: an unpinned torch would pull gigabytes of CUDA wheels.
export PIP_CONSTRAINT="$PWD/constraints.txt"

# System packages: Tesseract (text detection), Chromium (browser tests) and pdftotext (reading the PDF report back),
# from Debian.
missing=()
command -v tesseract >/dev/null || missing+=(tesseract-ocr)
command -v pdftotext >/dev/null || missing+=(poppler-utils)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing ${missing[*]} from Debian"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null ||
    { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi

# Services the tests use: fail early and clearly rather than half-way through.
python3 - <<'PY'
import os, socket, sys, urllib.parse
for name in ("DATABASE_URL", "CELERY_BROKER_URL"):
    url = urllib.parse.urlparse(os.environ[name])
    if url.scheme.startswith(("postgres", "redis")):
        try:
            socket.create_connection((url.hostname, url.port), timeout=3).close()
        except OSError:
            sys.exit(f"{name}: nothing answers at {url.hostname}:{url.port}. Start the service (see README) and retry.")
PY

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[ml,test]'

.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
