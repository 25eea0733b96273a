#!/usr/bin/env bash
# Runs the lint, then the whole test suite (unit, property and end-to-end with real git and git-lfs), installing what
# it needs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
echo "test: ruff" >&2
python -m ruff check --quiet git_theta tests benchmarks
python -m ruff format --check --quiet git_theta tests benchmarks
export GIT_THETA_TEST_STRICT=1  # a missing tool fails the tests that need it (tests/needs.py)
exec python -m pytest -n "${GIT_THETA_TEST_WORKERS:-2}" -q "$@"
