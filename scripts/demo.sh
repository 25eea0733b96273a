#!/usr/bin/env bash
# Demo of git-theta's main job on a small generated model: track, commit, change one tensor, commit,
# git theta ls, check out the old version byte for byte, and show that only the changed tensor was stored again.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"

DEMO="$(mktemp -d "${TMPDIR:-/tmp}/git-theta-demo.XXXXXX")"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
objects() { find .git/lfs/objects -type f 2>/dev/null | wc -l | tr -d ' '; }

cd "$DEMO"
step "A new repository in $DEMO, with git-theta configured for it alone (git theta install --local)"
git init -q -b main repo && cd repo
git config user.name "git-theta demo" && git config user.email "demo@example.com"
git theta install --local
git theta track '*.safetensors'
cat .gitattributes

step "Generate a small model (8 layers, fp32) with the safetensors library"
python - <<'PY'
import numpy as np
from safetensors.numpy import save_file
rng = np.random.default_rng(0)
model = {}
for i in range(8):
    model[f"encoder.layer{i}.attention.weight"] = rng.standard_normal((256, 256), dtype=np.float32) * 0.02
    model[f"encoder.layer{i}.attention.bias"] = np.zeros(256, dtype=np.float32)
    model[f"encoder.layer{i}.mlp.weight"] = rng.standard_normal((1024, 256), dtype=np.float32) * 0.02
save_file(model, "model.safetensors", metadata={"format": "pt"})
PY
ls -l model.safetensors

step "Commit it: git stores a small metadata file, each tensor becomes one compressed LFS object"
git add .gitattributes model.safetensors && git commit -q -m "base model"
echo "objects stored: $(objects)"
git show HEAD:model.safetensors | head -n 6
echo "  ..."
cp model.safetensors /tmp/.git-theta-demo-v1.$$

step "Fine-tune one tensor and commit again"
python - <<'PY'
from safetensors.numpy import load_file, save_file
model = load_file("model.safetensors")
model["encoder.layer3.mlp.weight"] += 1e-3
save_file(model, "model.safetensors", metadata={"format": "pt"})
PY
git status --short
git add model.safetensors && git commit -q -m "fine-tune layer 3"
echo "objects stored: $(objects)   (one new object: only the changed tensor)"
git diff --stat HEAD~1 HEAD
git theta diff HEAD~1 HEAD

step "git theta ls: the tracked checkpoint and its tensors"
git theta ls

step "Check out the old version: rebuilt byte for byte"
git checkout -q HEAD~1
cmp model.safetensors /tmp/.git-theta-demo-v1.$$ && echo "model.safetensors is byte-identical to the first commit"
[ -z "$(git status --porcelain)" ] && echo "git status: clean"
git checkout -q main
rm -f /tmp/.git-theta-demo-v1.$$

step "Storage"
echo "raw model: $(stat -c %s model.safetensors) bytes x 2 versions; LFS objects: $(du -sb .git/lfs/objects | cut -f1) bytes"
echo
echo "Demo repository left in $DEMO/repo"
