"""End to end: git theta diff and log, and git diff / log -p / show through our diff driver, on real checkpoints.

Every number is checked against a direct computation on the checkpoint files (numpy, or torch for bf16).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import git, random_model, save_safetensors, theta

NAME = "encoder.layer.3.output.dense.bias"


def commit(repo: Path, message: str, *paths: str) -> None:
    git("add", *(paths or ("-A",)), cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


def diff_json(repo: Path, *args: str) -> dict:
    return json.loads(theta("diff", "--format", "json", *args, cwd=repo).stdout)


def tensors_of(data: dict) -> dict[str, dict]:
    (checkpoint,) = data["checkpoints"]
    return {t["name"]: t for t in checkpoint["tensors"]}


def expected(old: np.ndarray, new: np.ndarray, bits: type) -> dict[str, float]:
    """The statistics computed directly: changed bit patterns, then float64 norms."""
    changed = old.view(bits) != new.view(bits)
    o, n = old.astype(np.float64).ravel(), new.astype(np.float64).ravel()
    delta = np.where(changed.ravel(), n - o, 0.0)
    norm = float(np.linalg.norm(o))
    return {
        "changed": int(changed.sum()),
        "l2": float(np.linalg.norm(delta)),
        "rel": float(np.linalg.norm(delta)) / norm,
        "cos": float(o @ n) / (norm * float(np.linalg.norm(n))),
    }


def assert_statistics(entry: dict, want: dict[str, float]) -> None:
    assert entry["changed"] == want["changed"]
    for key in ("l2", "rel", "cos"):
        assert entry[key] == pytest.approx(want[key], rel=1e-9, abs=1e-15), key


def test_minilm_one_tensor_changed(repo: Path, minilm: Path) -> None:
    from safetensors.numpy import load_file, save_file

    shutil.copy(minilm, repo / "model.safetensors")
    commit(repo, "base")
    model = load_file(str(minilm))
    old = model[NAME].copy()
    rng = np.random.default_rng(3)
    model[NAME][::2] += rng.standard_normal(len(old[::2])).astype(np.float32) * np.float32(1e-3)
    save_file(model, str(repo / "model.safetensors"), metadata={"format": "pt"})
    want = expected(old, model[NAME], np.uint32)

    working = diff_json(repo)  # index -> working tree: the file is read and hashed, nothing is stored
    assert (working["old"], working["new"]) == ("index", "working tree")
    checkpoint = working["checkpoints"][0]
    assert (checkpoint["changed"], checkpoint["added"], checkpoint["removed"], checkpoint["unchanged"]) == (
        1,
        0,
        0,
        103,
    )
    assert_statistics(tensors_of(working)[NAME], want)
    assert want["changed"] == 192

    commit(repo, "one tensor")
    assert_statistics(tensors_of(diff_json(repo, "HEAD~1", "HEAD"))[NAME], want)

    shown = git("diff", "HEAD~1", "HEAD", cwd=repo).stdout.decode()
    plus = [line for line in shown.splitlines() if line.startswith("+    ")]
    assert len(plus) == 1 and NAME in plus[0] and "changed 192/384 (50.00%)" in plus[0]
    assert "@@ 1 changed, 0 added, 0 removed, 103 unchanged" in shown

    logged = git("log", "-p", "-1", cwd=repo).stdout.decode()  # textconv: one line per tensor and side
    assert [line.split()[0] for line in logged.splitlines() if line.startswith(("-e", "+e"))] == [
        f"-{NAME}",
        f"+{NAME}",
    ]
    # The tensor was stored as a delta of its previous value, so its + line also says how it changed since then.
    (added_line,) = [line for line in logged.splitlines() if line.startswith("+e")]
    assert "changed 192/384 (50.00%)" in added_line
    extended = git("log", "-p", "-1", "--ext-diff", cwd=repo).stdout.decode()
    assert "changed 192/384 (50.00%)" in extended

    # --stat counts the changed lines of the metadata, where each tensor has one line.
    stat = git("diff", "--stat", "HEAD~1", "HEAD", cwd=repo).stdout.decode()
    assert "1 file changed, 1 insertion(+), 1 deletion(-)" in stat


def test_bf16_model_against_torch(repo: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    model = {f"layer{i}.weight": torch.randn(32, 48, generator=generator).to(torch.bfloat16) for i in range(3)}
    save_file(model, str(repo / "model.safetensors"))
    commit(repo, "bf16")
    new = {name: tensor.clone() for name, tensor in model.items()}
    new["layer0.weight"][:5] += (torch.randn(5, 48, generator=generator) * 0.01).to(torch.bfloat16)
    new["layer1.weight"].zero_()
    save_file(new, str(repo / "model.safetensors"))
    commit(repo, "edit")

    tensors = tensors_of(diff_json(repo, "HEAD~1", "HEAD"))
    assert set(tensors) == {"layer0.weight", "layer1.weight"}
    for name in tensors:
        a, b = model[name], new[name]
        changed = int((a.view(torch.int16) != b.view(torch.int16)).sum())
        a64, b64 = a.double().flatten(), b.double().flatten()
        delta = torch.linalg.vector_norm(b64 - a64).item()
        norm_a, norm_b = torch.linalg.vector_norm(a64).item(), torch.linalg.vector_norm(b64).item()
        entry = tensors[name]
        assert entry["changed"] == changed
        assert entry["l2"] == pytest.approx(delta, rel=1e-9)
        assert entry["rel"] == pytest.approx(delta / norm_a, rel=1e-9)
        cos = (a64 @ b64).item() / (norm_a * norm_b) if norm_b else 0.0
        assert entry["cos"] == pytest.approx(cos, rel=1e-9, abs=1e-12)
    assert tensors["layer1.weight"]["rel"] == pytest.approx(1.0) and tensors["layer1.weight"]["cos"] == 0.0


def test_added_removed_reshaped_retyped_in_a_torch_file(repo: Path) -> None:
    torch = pytest.importorskip("torch")
    old = {
        "keep": torch.arange(6, dtype=torch.float32),
        "drop": torch.ones(3),
        "grow": torch.zeros(4),
        "cast": torch.full((4,), 0.1),
        "signs": torch.tensor([float("nan"), 0.0, 1.0]),
    }
    torch.save(old, repo / "model.pt")
    commit(repo, "torch")
    new = dict(old, grow=torch.zeros(5), cast=old["cast"].half(), signs=torch.tensor([float("nan"), -0.0, 1.0]))
    del new["drop"]
    new["born"] = torch.ones(2, 2)
    torch.save(new, repo / "model.pt")

    tensors = tensors_of(diff_json(repo, "--", "model.pt"))  # working tree: read with the torch plugin
    assert {name: t["status"] for name, t in tensors.items()} == {
        "drop": "removed",
        "born": "added",
        "grow": "modified",
        "cast": "modified",
        "signs": "modified",
    }
    assert tensors["grow"]["old"]["shape"] == [4] and tensors["grow"]["new"]["shape"] == [5]
    assert "l2" not in tensors["grow"]  # not compared element-wise
    assert tensors["cast"]["new"]["dtype"] == "F16" and tensors["cast"]["changed"] == 4
    assert tensors["cast"]["l2"] == pytest.approx(2 * abs(float(np.float16(0.1)) - float(np.float32(0.1))))
    assert tensors["signs"]["changed"] == 1 and tensors["signs"]["l2"] == 0.0  # NaN -> NaN unchanged; 0.0 -> -0.0

    shown = git("diff", cwd=repo).stdout.decode()
    assert "+    born   F32 [2, 2]" in shown and "-    drop   F32 [3]" in shown
    assert "(shape or kind changed: not compared element-wise)" in shown


def test_git_diff_of_renamed_deleted_and_new_checkpoints(repo: Path) -> None:
    save_safetensors(repo / "a.safetensors", random_model(layers=2, width=4))
    commit(repo, "add")
    git("mv", "a.safetensors", "b.safetensors", cwd=repo)
    renamed = git("diff", "--cached", "-M", "HEAD", cwd=repo).stdout.decode()  # git passes 9 arguments
    assert "diff --theta a/a.safetensors b/b.safetensors\nsimilarity index 100%\nrename from a.safetensors" in renamed
    assert "@@ 0 changed, 0 added, 0 removed, 4 unchanged @@" in renamed
    commit(repo, "rename")
    (repo / "b.safetensors").unlink()
    deleted = git("diff", cwd=repo).stdout.decode()
    assert "+++ /dev/null" in deleted and "-    layer0.weight  F32 [4, 4]" in deleted
    created = git("show", "--ext-diff", "HEAD~1", "--", "a.safetensors", cwd=repo).stdout.decode()
    assert "--- /dev/null" in created and "+    layer1.bias    F32 [4]" in created


def test_sort_and_threshold(repo: Path) -> None:
    model = random_model(layers=3, width=16)
    save_safetensors(repo / "model.safetensors", model)
    commit(repo, "base")
    for index, scale in enumerate((1e-4, 1e-1, 1e-2)):
        model[f"layer{index}.weight"] = model[f"layer{index}.weight"] * np.float32(1 + scale)
    save_safetensors(repo / "model.safetensors", model)

    def names(*args: str) -> list[str]:
        out = theta("diff", *args, cwd=repo).stdout.decode().splitlines()
        return [line.split()[1] for line in out[2:]]

    assert names("--sort", "rel") == ["layer1.weight", "layer2.weight", "layer0.weight"]
    assert names("--sort", "name") == ["layer0.weight", "layer1.weight", "layer2.weight"]
    assert names("--sort", "l2", "--threshold", "1e-3") == ["layer1.weight", "layer2.weight"]
    # As docs/diff.md writes it: options before '--', paths after.
    documented = names("HEAD", "--sort", "rel", "--threshold", "1e-3", "--", "model.safetensors")
    assert documented == ["layer1.weight", "layer2.weight"]
    out = theta("diff", "--threshold", "0.05", cwd=repo).stdout.decode()
    assert "(2 below the threshold not shown)" in out and "3 changed" in out
    shown = diff_json(repo, "--threshold", "1e-3")
    assert shown["checkpoints"][0]["changed"] == 3 and len(shown["checkpoints"][0]["tensors"]) == 2


def test_working_tree_index_and_revisions(repo: Path) -> None:
    model = random_model(layers=2, width=8)
    save_safetensors(repo / "model.safetensors", model)
    commit(repo, "v1")
    model["layer0.bias"] = model["layer0.bias"] + np.float32(1)
    save_safetensors(repo / "model.safetensors", model)
    git("add", "model.safetensors", cwd=repo)  # the index holds v2
    model["layer1.bias"] = model["layer1.bias"] * np.float32(2)
    save_safetensors(repo / "model.safetensors", model)  # the working tree holds v3

    def changed(*args: str) -> set[str]:
        data = diff_json(repo, *args)
        return {t["name"] for c in data["checkpoints"] for t in c["tensors"]}

    assert changed() == {"layer1.bias"}  # index -> working tree
    assert changed("--cached") == {"layer0.bias"}  # HEAD -> index
    assert changed("HEAD") == {"layer0.bias", "layer1.bias"}  # HEAD -> working tree
    git("commit", "-q", "-m", "v2", cwd=repo)
    assert changed("HEAD~1", "HEAD") == {"layer0.bias"}
    assert changed("HEAD~1..HEAD") == {"layer0.bias"}
    assert changed("HEAD", "HEAD~1", "--", "model.safetensors") == {"layer0.bias"}
    commit(repo, "v3")
    assert changed() == set() and changed("HEAD~1") == {"layer1.bias"}
    assert "no tracked checkpoint differs between index and working tree" in theta("diff", cwd=repo).stdout.decode()

    lazy = git("log", "-p", "-1", cwd=repo, env={"GIT_LFS_SKIP_SMUDGE": "1"}).stdout  # textconv reads metadata
    assert lazy == git("log", "-p", "-1", cwd=repo).stdout

    history = theta("log", "model.safetensors", cwd=repo).stdout.decode().splitlines()
    assert [line.split(None, 2)[2] for line in history[::2]] == ["v3", "v2", "v1"]
    assert history[1].strip().startswith("1 changed, 0 added, 0 removed, 3 unchanged")
    assert "largest rel" in history[1] and "layer1.bias" in history[1]
    assert history[5].strip() == "0 changed, 4 added, 0 removed, 0 unchanged"
    records = json.loads(theta("log", "-n", "2", "--format", "json", "model.safetensors", cwd=repo).stdout)
    assert [r["subject"] for r in records] == ["v3", "v2"] and records[1]["tensors"][0]["name"] == "layer0.bias"

    # -p: each commit's changed tensors as a table, numbers as git theta diff gives them (v2: bias + 1, all 8).
    patched = theta("log", "-p", "-n", "2", "model.safetensors", cwd=repo).stdout.decode().splitlines()
    assert patched[2].split() == ["status", "tensor", "dtype/shape", "changed", "fraction", "l2", "rel", "cos"]
    assert patched[3].split()[:6] == ["changed", "layer1.bias", "F32", "[8]", "8", "100.00%"]
    v2 = next(index for index, line in enumerate(patched) if line.endswith(" v2"))
    row = patched[v2 + 3].split()
    assert row[:6] == ["changed", "layer0.bias", "F32", "[8]", "8", "100.00%"] and float(row[6]) == pytest.approx(
        math.sqrt(8), rel=1e-3
    )


def test_plot_writes_a_png(repo: Path, tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image")
    model = random_model(layers=3, width=8)
    save_safetensors(repo / "model.safetensors", model)
    commit(repo, "base")
    for name in model:
        model[name] = model[name] * np.float32(1.01)
    save_safetensors(repo / "model.safetensors", model)
    for by in ("tensor", "layer"):
        out = tmp_path / f"{by}.png"
        theta("diff", "--plot", str(out), "--plot-by", by, cwd=repo)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = image.imread(out)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_install_writes_the_diff_driver(isolated_git: Path) -> None:
    def get(key: str) -> str:
        return git("config", "--global", "--get", key, cwd=isolated_git, check=False).stdout.decode().strip()

    theta("install", cwd=isolated_git)
    assert get("diff.theta.command") == f"{shutil.which('git-theta')} diff-driver"  # by its absolute path
    assert get("diff.theta.textconv") == f"{shutil.which('git-theta')} textconv"
    theta("uninstall", cwd=isolated_git)
    assert get("diff.theta.command") == "" and get("diff.theta.textconv") == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("diff", "nosuchrev", "--", "model.safetensors"), "unknown revision 'nosuchrev'"),
        (("diff", "nosuchrev"), "unknown revision or path not in the working tree: 'nosuchrev'"),
        (("diff", "HEAD", "notes.txt"), "notes.txt is not tracked by git-theta"),
        (("diff", "HEAD", "--", "gone.safetensors"), "gone.safetensors: no tracked checkpoint at this path"),
        (("diff", "HEAD", "HEAD", "HEAD"), "give at most two revisions"),
        (("log", "notes.txt"), "notes.txt is not tracked by git-theta"),
        (("log",), "name exactly one checkpoint path"),
        (("diff", "HEAD", "HEAD", "--", "model.safetensors", "--sort", "rel"), "options go before '--'"),
        (("log", "--", "model.safetensors", "-n", "1"), "move -n before the '--'"),
    ],
)
def test_bad_input_is_one_clear_line(repo: Path, args: tuple[str, ...], message: str) -> None:
    save_safetensors(repo / "model.safetensors", random_model(layers=1, width=4))
    (repo / "notes.txt").write_text("notes\n")
    commit(repo, "base")
    result = theta(*args, cwd=repo, check=False)
    assert result.returncode != 0
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("git-theta: error: ") and message in lines[0], lines


def test_git_show_gives_each_commits_own_change_however_the_tensor_is_stored(repo: Path) -> None:
    model = random_model(seed=11, width=64)
    save_safetensors(repo / "model.safetensors", model)
    commit(repo, "v0")
    versions = [model]
    for step, rows in ((1, slice(0, 8)), (2, slice(8, 40))):
        model = {k: v.copy() for k, v in model.items()}
        model["layer0.weight"][rows] += np.float32(1e-3) * step
        model["layer1.weight"] = np.random.default_rng(step).standard_normal((64, 64), dtype=np.float32)  # rewritten
        save_safetensors(repo / "model.safetensors", model)
        commit(repo, f"v{step}")
        versions.append(model)

    shown = git("show", "HEAD", cwd=repo).stdout.decode()
    added = {line.split()[0][1:]: line for line in shown.splitlines() if line.startswith("+layer")}
    old, new = versions[1], versions[2]
    wanted = {name: expected(old[name], new[name], np.uint32) for name in ("layer0.weight", "layer1.weight")}
    for name, want in wanted.items():
        assert f"changed {want['changed']}/4096 " in added[name], added[name]  # v1 -> v2, not v0 -> v2
        assert f"cos {want['cos']:.6f}" in added[name]
    # One summary line per commit: the + line is this commit's, the - line the parent's.
    elements = sum(want["changed"] for want in wanted.values())
    delta = math.sqrt(sum(want["l2"] ** 2 for want in wanted.values()))
    summary = f"+changed when committed: 2 of 6 tensors, {elements} elements, ||delta|| {delta:.3e}; the other 4"
    assert summary in shown, shown
    assert len([line for line in shown.splitlines() if line.startswith("-changed when committed: 2 of 6")]) == 1

    # Only what the commit changed is read: without the objects of the unchanged tensors, the output is the same.
    metadata = json.loads(git("cat-file", "blob", "HEAD:model.safetensors", cwd=repo).stdout)
    for entry in metadata["tensors"].values():
        if "previous" not in entry:
            oid = entry["oid"]
            (repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).unlink()
    assert git("show", "HEAD", cwd=repo).stdout.decode() == shown


def test_git_log_p_goes_on_past_a_commit_with_malformed_metadata(repo: Path) -> None:
    save_safetensors(repo / "model.safetensors", random_model(0))
    commit(repo, "good one")
    metadata = git("show", "HEAD:model.safetensors", cwd=repo).stdout
    # Edited by hand and added where git-theta is not installed (no global config): git stores it as it is.
    (repo / "model.safetensors").write_bytes(metadata.replace(b'"tensors": {', b'"tensors": {{', 1))
    no_theta = {"GIT_CONFIG_GLOBAL": "/dev/null"}
    git("add", "model.safetensors", cwd=repo, env=no_theta)
    git("-c", "user.name=Other", "-c", "user.email=o@example.com", "commit", "-q", "-m", "bad", cwd=repo, env=no_theta)
    save_safetensors(repo / "model.safetensors", random_model(1))
    commit(repo, "good two")

    for args in (("log", "-p"), ("log", "-p", "--ext-diff"), ("diff", "HEAD~2", "HEAD~1")):
        shown = git(*args, cwd=repo)
        out = shown.stdout.decode()
        assert shown.stderr == b"", args
        assert out.count("malformed git-theta metadata, tensors not shown") == (1 if args[0] == "diff" else 2), args
        if args[0] == "log":
            assert all(f"    {subject}\n" in out for subject in ("good two", "bad", "good one")), args
    patch = git("log", "-p", cwd=repo).stdout.decode()
    bad = patch[patch.index("    bad\n") : patch.index("    good one\n")]
    notes = [line for line in bad.splitlines() if "malformed" in line]
    assert len(notes) == 1 and notes[0].startswith(
        "+malformed git-theta metadata, tensors not shown: model.safetensors"
    )
    assert "+layer0.weight  F32 [64, 64]" in patch[: patch.index("    bad\n")]  # the commits around it are shown
    assert "+layer0.weight  F32 [64, 64]" in patch[patch.index("    good one\n") :]
