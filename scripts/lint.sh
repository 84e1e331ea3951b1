#!/usr/bin/env bash
# Lint and format check (ruff, rules in pyproject.toml). CI runs it before the tests.
# To fix what it finds: .venv/bin/ruff format . && .venv/bin/ruff check --fix .
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
