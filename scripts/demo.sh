#!/usr/bin/env bash
# Demo of git-theta's main job on a small generated model: track, commit, change one tensor, commit,
# git theta ls, check out the old version byte for byte, and show that only the changed tensor was stored again;
# then a fine-tune of every weight stored as deltas, a low-rank update committed as its factors, and a model merge.
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

step "Fine-tune every weight a little: each changed tensor is stored as a delta of its previous value"
before=$(du -sb .git/lfs/objects | cut -f1)
python - <<'PY'
import numpy as np
from safetensors.numpy import load_file, save_file
rng = np.random.default_rng(1)
model = load_file("model.safetensors")
model = {k: v + (rng.standard_normal(v.shape) * 2e-5).astype(np.float32) for k, v in model.items()}
save_file(model, "model.safetensors", metadata={"format": "pt"})
PY
git add model.safetensors && git commit -q -m "fine-tune everything"
echo "new objects: $(( $(du -sb .git/lfs/objects | cut -f1) - before )) bytes for a $(stat -c %s model.safetensors)-byte model"
git theta ls HEAD model.safetensors | sed -n 1,5p
git log -p -1 --format=%s | grep '^+encoder.layer0.attention.weight' | cut -c1-200

step "A low-rank update (the original Git-Theta's <param>/R and <param>/C), committed as its factors"
python - <<'PY'
import numpy as np
from safetensors.numpy import save_file
rng = np.random.default_rng(2)
save_file({"encoder.layer0.mlp.weight/R": rng.standard_normal((1024, 4), dtype=np.float32) * 1e-3,
           "encoder.layer0.mlp.weight/C": rng.standard_normal((4, 256), dtype=np.float32) * 1e-3}, "lora.safetensors")
PY
git theta add model.safetensors --update-type low-rank --update-path lora.safetensors
git commit -q -m "low-rank update of layer 0"
git theta ls HEAD model.safetensors | grep -E "tensor|layer0.mlp"
[ -z "$(git status --porcelain --untracked-files=no)" ] && echo "git status: clean (the working file holds the updated weights)"

step "Merge two fine-tunes tensor by tensor: the changed tensors are averaged"
git checkout -q -b other HEAD~1
python - <<'PY'
from safetensors.numpy import load_file, save_file
model = load_file("model.safetensors")
model["encoder.layer0.mlp.weight"] -= 1e-3
save_file(model, "model.safetensors", metadata={"format": "pt"})
PY
git commit -q -am "another fine-tune of layer 0"
git checkout -q main
GIT_THETA_MERGE_STRATEGY=average git merge -q --no-edit other
git log --oneline -1
rm -f lora.safetensors

step "Storage"
echo "raw model: $(stat -c %s model.safetensors) bytes x $(git rev-list --count main) commits; LFS objects: $(du -sb .git/lfs/objects | cut -f1) bytes"
echo
echo "Demo repository left in $DEMO/repo"
