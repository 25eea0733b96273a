#!/usr/bin/env bash
# Runs the whole test suite (unit, property and end-to-end with real git and git-lfs), installing what it needs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec python -m pytest -n "${GIT_THETA_TEST_WORKERS:-2}" -q "$@"
