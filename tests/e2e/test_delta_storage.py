"""Plain ``git add`` stores a changed tensor in its cheapest exact form; every version checks out exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.helpers import git, lfs_objects, random_model, save_safetensors, theta


def commit_all(repo: Path, message: str) -> None:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)


def nudged(model: dict[str, np.ndarray], seed: int, scale: float = 1e-3) -> dict[str, np.ndarray]:
    """Every weight moved a little, as a fine-tuning step moves them."""
    rng = np.random.default_rng(seed)
    return {k: (v + rng.standard_normal(v.shape).astype(v.dtype) * scale).astype(v.dtype) for k, v in model.items()}


def entries(repo: Path, rev: str = "HEAD") -> dict[str, dict]:
    listing = json.loads(theta("ls", "--json", rev, cwd=repo).stdout)
    return (
        next(iter(listing.values()))["tensors"]
        if isinstance(listing, dict) and "tensors" not in listing
        else listing["tensors"]
    )


def stored_bytes(repo: Path, oids: set[str]) -> int:
    root = repo / ".git" / "lfs" / "objects"
    return sum((root / oid[:2] / oid[2:4] / oid).stat().st_size for oid in oids)


def test_a_fine_tuned_version_is_stored_as_deltas_and_checks_out_exactly(repo: Path, tmp_path: Path) -> None:
    model = random_model(seed=1, width=128)
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    before = lfs_objects(repo)
    save_safetensors(repo / "model.safetensors", nudged(model, 2))
    expected = (repo / "model.safetensors").read_bytes()
    commit_all(repo, "fine-tune")
    new = lfs_objects(repo) - before
    raw = sum(v.nbytes for v in model.values())
    assert stored_bytes(repo, new) < 0.75 * raw

    tensors = entries(repo)
    # Matrices are stored as deltas; a 512-byte bias may be cheaper whole.
    assert {t.get("update", "dense") for t in tensors.values() if t["nbytes"] > 4096} == {"delta"}
    assert "delta (depth 1)" in theta("ls", "HEAD", "model.safetensors", cwd=repo).stdout.decode()

    (repo / "model.safetensors").unlink()
    git("checkout", "--", "model.safetensors", cwd=repo)
    assert (repo / "model.safetensors").read_bytes() == expected
    assert git("status", "--porcelain", cwd=repo).stdout == b""

    clone = tmp_path / "clone"
    git("clone", "-q", str(repo), str(clone), cwd=tmp_path)
    assert (clone / "model.safetensors").read_bytes() == expected
    assert git("status", "--porcelain", cwd=clone).stdout == b""


def test_every_version_is_one_update_from_a_keyframe_and_checks_out(repo: Path) -> None:
    model = random_model(seed=3)
    versions = []
    for step in range(5):
        model = nudged(model, 10 + step) if step else model
        save_safetensors(repo / "model.safetensors", model)
        versions.append((repo / "model.safetensors").read_bytes())
        commit_all(repo, f"v{step}")
        git("tag", f"v{step}", cwd=repo)
    depths = [max(len(t.get("base", [])) for t in entries(repo, f"v{step}").values()) for step in range(5)]
    assert depths == [0, 1, 1, 1, 1]
    for step, expected in enumerate(versions):
        git("checkout", "-q", f"v{step}", cwd=repo)
        assert (repo / "model.safetensors").read_bytes() == expected


def test_deltas_name_their_base_by_content_so_shallow_clones_and_cherry_picks_work(repo: Path, tmp_path: Path) -> None:
    model = random_model(seed=4)
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    git("branch", "side", cwd=repo)
    save_safetensors(repo / "model.safetensors", nudged(model, 5))
    tuned = (repo / "model.safetensors").read_bytes()
    commit_all(repo, "fine-tune")

    shallow = tmp_path / "shallow"
    git("clone", "-q", "--depth", "1", f"file://{repo}", str(shallow), cwd=tmp_path)
    assert (shallow / "model.safetensors").read_bytes() == tuned

    (repo / "notes.txt").write_text("side work\n")
    git("checkout", "-q", "side", cwd=repo)
    (repo / "notes.txt").write_text("side work\n")
    commit_all(repo, "notes")
    git("cherry-pick", "main", cwd=repo)
    assert (repo / "model.safetensors").read_bytes() == tuned
    git("rebase", "-q", "main", cwd=repo)
    assert (repo / "model.safetensors").read_bytes() == tuned
    assert git("status", "--porcelain", cwd=repo).stdout == b""


def test_a_tensor_moved_to_another_file_is_not_stored_again(repo: Path) -> None:
    model = random_model(seed=6)
    names = sorted(model)
    save_safetensors(repo / "model-1.safetensors", {k: model[k] for k in names[:3]})
    save_safetensors(repo / "model-2.safetensors", {k: model[k] for k in names[3:]})
    commit_all(repo, "two shards")
    before = lfs_objects(repo)
    (repo / "model-1.safetensors").unlink()
    (repo / "model-2.safetensors").unlink()
    save_safetensors(repo / "model-a.safetensors", {k: model[k] for k in names[:2]})
    save_safetensors(repo / "model-b.safetensors", {k: model[k] for k in names[2:]})
    commit_all(repo, "re-sharded")
    assert lfs_objects(repo) == before


def test_max_delta_depth_zero_stores_every_changed_tensor_whole(repo: Path) -> None:
    git("config", "theta.maxDeltaDepth", "0", cwd=repo)
    model = random_model(seed=7)
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    save_safetensors(repo / "model.safetensors", nudged(model, 8))
    commit_all(repo, "tuned")
    assert {t.get("update", "dense") for t in entries(repo).values()} == {"dense"}


def test_returning_to_the_committed_content_restores_the_committed_metadata(repo: Path) -> None:
    model = random_model(seed=9)
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    save_safetensors(repo / "model.safetensors", nudged(model, 10))
    commit_all(repo, "tuned")
    committed = (repo / "model.safetensors").read_bytes()
    save_safetensors(repo / "model.safetensors", nudged(model, 11))
    git("add", "model.safetensors", cwd=repo)  # another version staged
    (repo / "model.safetensors").write_bytes(committed)
    git("add", "model.safetensors", cwd=repo)  # and the committed one again
    assert git("status", "--porcelain", cwd=repo).stdout == b""


def test_each_file_of_one_git_add_is_compared_with_its_own_previous_version(repo: Path) -> None:
    models = {name: random_model(seed=seed) for seed, name in enumerate(("a.safetensors", "b.safetensors"), 20)}
    for name, model in models.items():
        save_safetensors(repo / name, model)
    commit_all(repo, "two models with the same tensor names")
    old = {name: entries_of(repo, name) for name in models}
    for seed, (name, model) in enumerate(models.items(), 30):
        save_safetensors(repo / name, nudged(model, seed))
    save_safetensors(repo / "c.safetensors", nudged(models["a.safetensors"], 40))  # new, beside them
    commit_all(repo, "both changed, one added")  # one git add: one filter process cleans all three
    for name in models:
        for tensor, entry in entries_of(repo, name).items():
            assert entry["previous"][0][0] == old[name][tensor]["hash"], (name, tensor)
    assert all("previous" not in entry for entry in entries_of(repo, "c.safetensors").values())


def entries_of(repo: Path, path: str) -> dict[str, dict]:
    return json.loads(theta("ls", "--json", "HEAD", path, cwd=repo).stdout)[path]["tensors"]


def test_a_corrupt_or_missing_delta_object_fails_the_checkout_with_one_line(repo: Path) -> None:
    model = random_model(seed=12, width=128)
    save_safetensors(repo / "model.safetensors", model)
    commit_all(repo, "base")
    before = lfs_objects(repo)
    save_safetensors(repo / "model.safetensors", nudged(model, 13))
    commit_all(repo, "tuned")
    weight = entries(repo)["layer0.weight"]
    assert weight["update"] == "delta" and weight["oid"] not in before
    path = repo / ".git" / "lfs" / "objects" / weight["oid"][:2] / weight["oid"][2:4] / weight["oid"]
    corrupt = bytearray(path.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF  # same size: only the checksums can tell
    path.chmod(0o644)
    path.write_bytes(bytes(corrupt))
    for damage in ("corrupt", "missing"):
        if damage == "missing":
            path.unlink()
        (repo / "model.safetensors").unlink(missing_ok=True)
        result = git("checkout", "--", "model.safetensors", cwd=repo, check=False)
        errors = [line for line in result.stderr.decode().splitlines() if line.startswith("git-theta")]
        assert result.returncode != 0 and len(errors) == 1 and weight["oid"][:12] in errors[0], result.stderr
        assert b"Traceback" not in result.stderr
        assert not (repo / "model.safetensors").exists()  # no half-written checkpoint
