#!/usr/bin/env bash
# Creates a virtual environment with the original Git-Theta 0.2.0 from PyPI, for tests/legacy/make_fixtures.py and
# the live test in tests/e2e/test_legacy.py:  bash tests/legacy/make_legacy_venv.sh [DIR]  (default: /tmp/venv-legacy)
# 0.2.0 forgets to require colorama; it needs safetensors for safetensors files and torch for PyTorch ones. torch is
# large: when the Python running this script already has it, it is linked in instead of downloaded again.
set -euo pipefail
VENV="${1:-/tmp/venv-legacy}"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "git-theta==0.2.0" colorama safetensors
if SITE="$("$PYTHON" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null)"; then
  SHIM="$VENV/torch-shim"
  mkdir -p "$SHIM"
  for name in torch torchgen functorch sympy mpmath networkx jinja2 markupsafe filelock fsspec typing_extensions.py; do
    [ -e "$SITE/$name" ] && ln -sfn "$SITE/$name" "$SHIM/$name"
  done
  echo "$SHIM" > "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torch-shim.pth"
else
  "$VENV/bin/python" -m pip install -q torch
fi
# From / so that a git_theta package in the current directory does not shadow the installed one.
(cd / && "$VENV/bin/python" -c 'import torch, git_theta.checkpoints.pickled_dict_checkpoint') >/dev/null
echo "export GIT_THETA_LEGACY_VENV=$VENV"
