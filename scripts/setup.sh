#!/usr/bin/env bash
# Creates what git-theta needs on a fresh machine: git-lfs (apt-get when missing and possible), a virtual
# environment in .venv, and the package with its test extras and torch. Sourced by scripts/test.sh and scripts/demo.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GIT_THETA_VENV:-$ROOT/.venv}"
TORCH_SPEC="${GIT_THETA_TORCH_SPEC:-torch==2.13.0}"

die() { echo "setup: $*" >&2; exit 1; }

command -v git >/dev/null 2>&1 || die "git is not installed; install git (e.g. apt-get install git) and rerun"
PYTHON="${PYTHON:-$(command -v python3 || true)}"
[ -n "$PYTHON" ] || die "python3 is not installed; install Python 3.11 or newer and rerun"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11 or newer is needed ($PYTHON is older)"

if ! git lfs version >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing git-lfs with apt-get" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git-lfs) >/dev/null \
      || die "apt-get could not install git-lfs; install it yourself (https://git-lfs.com) and rerun"
  elif command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "setup: installing git-lfs with sudo apt-get" >&2
    (sudo -n apt-get update -qq && sudo -n DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git-lfs) >/dev/null \
      || die "apt-get could not install git-lfs; install it yourself (https://git-lfs.com) and rerun"
  else
    die "git-lfs is not installed and cannot be installed here; install it (apt-get install git-lfs, brew install git-lfs, or https://git-lfs.com) and rerun"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating the virtual environment $VENV" >&2
  "$PYTHON" -m venv "$VENV" || die "could not create a virtual environment (on Debian/Ubuntu: apt-get install python3-venv)"
fi

# Reinstall only when the project's dependencies changed since the last run.
STAMP="$VENV/.git-theta-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "setup: installing git-theta and its test dependencies into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  "$VENV/bin/python" -m pip install -q "$TORCH_SPEC" || die "could not install $TORCH_SPEC (set GIT_THETA_TORCH_SPEC to another torch version)"
  "$VENV/bin/python" -m pip install -q -e "$ROOT[test,torch,bench]" || die "could not install git-theta's dependencies with pip"
  echo "$WANT" > "$STAMP"
fi

export PATH="$VENV/bin:$PATH"
