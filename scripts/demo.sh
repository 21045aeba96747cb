#!/usr/bin/env bash
# Install and start the demo with embedded defaults: SQLite, a Celery worker with a file-based broker (nothing to
# install), CPU. Creates demo accounts and a demo study, then serves http://127.0.0.1:8000/.
# Options go to `manage.py rundemo`, e.g. --real-dir DIR --synthetic-dir DIR (default: built-in phantoms).
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_CONSTRAINT="$PWD/constraints.txt"
if ! command -v tesseract >/dev/null && [ "$(id -u)" -eq 0 ]; then
  apt-get install -y -qq tesseract-ocr >/dev/null || echo "Tesseract is not installed: text cleanup will be unavailable."
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[ml]'
exec .venv/bin/python manage.py rundemo "$@"
