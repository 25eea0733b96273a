"""``git theta add --update-type ... [--update-path ...]``: parameter-efficient updates committed as what they are."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import git, lfs_objects, random_model, save_safetensors, theta

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


def load(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def entries(repo: Path, path: str) -> dict[str, dict]:
    return json.loads(theta("ls", "--json", "HEAD", path, cwd=repo).stdout)[path]["tensors"]


def commit_base(repo: Path, state: dict[str, np.ndarray], name: str = "model.safetensors") -> None:
    save_safetensors(repo / name, state)
    git("add", name, cwd=repo)
    git("commit", "-q", "-m", "base", cwd=repo)


def add_update(repo: Path, update_type: str, update_path: Path | None = None, name: str = "model.safetensors"):
    args = ["add", name, "--update-type", update_type]
    if update_path is not None:
        args += ["--update-path", str(update_path)]
    result = theta(*args, cwd=repo)
    git("commit", "-q", "-m", f"{update_type} update", cwd=repo)
    return result


def assert_checks_out_everywhere(repo: Path, tmp_path: Path, name: str = "model.safetensors") -> bytes:
    """The committed weights check out the same in the repository and in a clone; git status stays clean."""
    assert git("status", "--porcelain", cwd=repo).stdout == b""
    data = (repo / name).read_bytes()
    (repo / name).unlink()
    git("checkout", "--", name, cwd=repo)
    assert (repo / name).read_bytes() == data
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo), str(clone), cwd=tmp_path)
    assert (clone / name).read_bytes() == data
    assert git("status", "--porcelain", cwd=clone).stdout == b""
    return data


def tiny_bert():
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48
    )
    torch.manual_seed(0)
    return transformers.BertModel(config, add_pooling_layer=False)


def state_of(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if v.is_floating_point()}


def test_a_peft_lora_adapter_is_committed_as_low_rank_updates(repo: Path, tmp_path: Path) -> None:
    base_model = tiny_bert()
    base = state_of(base_model)
    commit_base(repo, base)
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["query", "value"],
        rank_pattern={"layer.1.attention.self.query": 2},
        alpha_pattern={"value": 3},
        use_rslora=True,
        init_lora_weights=False,
    )
    lora = peft.get_peft_model(base_model, config)
    lora.save_pretrained(str(tmp_path / "adapter"))
    merged = state_of(lora.merge_and_unload())
    before = lfs_objects(repo)

    add_update(repo, "low-rank", tmp_path / "adapter")

    tensors = entries(repo, "model.safetensors")
    updated = sorted(name for name, entry in tensors.items() if entry.get("update") == "low-rank")
    assert updated == sorted(n for n in base if n.endswith(("query.weight", "value.weight")))
    new_objects = lfs_objects(repo) - before
    assert len(new_objects) == len(updated)  # only the factors were stored, one object per updated tensor
    data = assert_checks_out_everywhere(repo, tmp_path)
    (tmp_path / "got.safetensors").write_bytes(data)
    got = load(tmp_path / "got.safetensors")
    for name in base:
        # PEFT merges with a float32 matmul; git-theta sums in float64 and rounds once.
        np.testing.assert_allclose(got[name], merged[name], rtol=1e-5, atol=1e-6, err_msg=name)
        if name not in updated:
            assert np.array_equal(got[name], base[name])
    assert not np.array_equal(got[updated[0]], base[updated[0]])


def test_fan_in_fan_out_lora_on_gpt2(repo: Path, tmp_path: Path) -> None:
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=1, n_head=2)
    torch.manual_seed(1)
    model = transformers.GPT2Model(config)
    base = state_of(model)
    commit_base(repo, base)
    lora = peft.get_peft_model(
        model,
        peft.LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False),
    )
    lora.save_pretrained(str(tmp_path / "adapter"))
    merged = state_of(lora.merge_and_unload())
    add_update(repo, "low-rank", tmp_path / "adapter")
    (tmp_path / "got.safetensors").write_bytes(assert_checks_out_everywhere(repo, tmp_path))
    got = load(tmp_path / "got.safetensors")
    name = "h.0.attn.c_attn.weight"
    assert entries(repo, "model.safetensors")[name]["update"] == "low-rank"
    np.testing.assert_allclose(got[name], merged[name], rtol=1e-5, atol=1e-6)


def test_a_peft_ia3_adapter_is_committed_as_ia3_updates(repo: Path, tmp_path: Path) -> None:
    base_model = tiny_bert()
    base = state_of(base_model)
    commit_base(repo, base)
    config = peft.IA3Config(
        target_modules=["key", "value", "output.dense"], feedforward_modules=["output.dense"], init_ia3_weights=False
    )
    adapted = peft.get_peft_model(base_model, config)
    adapted.save_pretrained(str(tmp_path / "adapter"))
    merged = state_of(adapted.merge_and_unload())
    add_update(repo, "ia3", tmp_path / "adapter")
    (tmp_path / "got.safetensors").write_bytes(assert_checks_out_everywhere(repo, tmp_path))
    got = load(tmp_path / "got.safetensors")
    kinds = {entry.get("update", "dense") for entry in entries(repo, "model.safetensors").values()}
    assert "ia3" in kinds
    for name in base:
        np.testing.assert_array_equal(got[name], merged[name], err_msg=name)  # one rounding: both exact


def test_original_naming_low_rank_sparse_and_ia3_files(repo: Path, tmp_path: Path) -> None:
    model = random_model(seed=2, width=16)
    commit_base(repo, model)
    rng = np.random.default_rng(3)
    left, right = rng.standard_normal((16, 2)).astype(np.float32), rng.standard_normal((2, 16)).astype(np.float32)
    save_safetensors(tmp_path / "lr.safetensors", {"layer0.weight/R": left, "layer0.weight/C": right})
    add_update(repo, "low-rank", tmp_path / "lr.safetensors")
    step1 = load(repo / "model.safetensors")
    expected = model["layer0.weight"].astype(np.float64) + left.astype(np.float64) @ right.astype(np.float64)
    np.testing.assert_allclose(step1["layer0.weight"], expected.astype(np.float32), rtol=1e-6)

    indices, values = np.array([3, 7, 200]), np.array([1.0, -2.0, 0.5], np.float32)
    save_safetensors(tmp_path / "sp.safetensors", {"layer1.weight/indices": indices, "layer1.weight/values": values})
    add_update(repo, "sparse", tmp_path / "sp.safetensors")
    step2 = load(repo / "model.safetensors")
    expected_sparse = model["layer1.weight"].copy().reshape(-1)
    expected_sparse[indices] += values
    np.testing.assert_array_equal(step2["layer1.weight"].reshape(-1), expected_sparse)

    scale = rng.standard_normal((16, 1)).astype(np.float32)
    save_safetensors(tmp_path / "ia3.safetensors", {"layer2.weight/ia3": scale})
    add_update(repo, "ia3", tmp_path / "ia3.safetensors")
    step3 = load(repo / "model.safetensors")
    np.testing.assert_array_equal(step3["layer2.weight"], model["layer2.weight"] * scale)
    np.testing.assert_array_equal(step3["layer0.weight"], step1["layer0.weight"])  # earlier updates are kept
    kinds = {n: e.get("update", "dense") for n, e in entries(repo, "model.safetensors").items()}
    assert (
        kinds["layer0.weight"] == "low-rank" and kinds["layer1.weight"] == "sparse" and kinds["layer2.weight"] == "ia3"
    )
    assert_checks_out_everywhere(repo, tmp_path)
    revisions = [git("rev-parse", rev, cwd=repo).stdout.decode().strip() for rev in ("HEAD~2", "HEAD~1")]
    for rev, expected_state in zip(revisions, (step1, step2), strict=True):
        git("checkout", "-q", rev, cwd=repo)
        assert np.array_equal(load(repo / "model.safetensors")["layer0.weight"], expected_state["layer0.weight"])


def test_an_update_is_inferred_exactly_or_stored_otherwise_with_a_note(repo: Path) -> None:
    model = random_model(seed=4, width=32)
    commit_base(repo, model)
    model["layer0.weight"].reshape(-1)[[5, 9]] = [3.0, -3.0]
    save_safetensors(repo / "model.safetensors", model)
    result = add_update(repo, "sparse")
    assert entries(repo, "model.safetensors")["layer0.weight"]["update"] == "sparse"
    assert b"not exactly" not in result.stderr

    model["layer1.weight"] = model["layer1.weight"] + 0.25
    save_safetensors(repo / "model.safetensors", model)
    result = add_update(repo, "low-rank")
    assert b"tensor 'layer1.weight': its change is not exactly a low-rank update" in result.stderr
    assert entries(repo, "model.safetensors")["layer1.weight"].get("update", "dense") in ("dense", "delta", "sparse")
    assert git("status", "--porcelain", cwd=repo).stdout == b""


def test_bad_update_files_fail_with_one_line(repo: Path, tmp_path: Path) -> None:
    commit_base(repo, random_model(seed=5, width=8))
    save_safetensors(
        tmp_path / "wrong.safetensors",
        {"nothing.weight/R": np.ones((8, 1), np.float32), "nothing.weight/C": np.ones((1, 8), np.float32)},
    )
    result = theta(
        "add",
        "model.safetensors",
        "--update-type",
        "low-rank",
        "--update-path",
        str(tmp_path / "wrong.safetensors"),
        cwd=repo,
        check=False,
    )
    assert result.returncode != 0
    assert b"match no tensor of model.safetensors" in result.stderr and b"Traceback" not in result.stderr
    result = theta(
        "add",
        "model.safetensors",
        "--update-type",
        "ia3",
        "--update-path",
        str(tmp_path / "wrong.safetensors"),
        cwd=repo,
        check=False,
    )
    assert b"holds a low-rank update" in result.stderr
    assert git("diff", "--cached", "--name-only", cwd=repo).stdout == b""


def test_stacked_updates_stay_within_max_delta_depth(repo: Path, tmp_path: Path) -> None:
    git("config", "theta.maxDeltaDepth", "2", cwd=repo)
    model = random_model(seed=6, width=16)
    commit_base(repo, model)
    rng = np.random.default_rng(7)
    expected = model["layer0.weight"].astype(np.float64)
    for step in range(4):
        left, right = rng.standard_normal((16, 1)).astype(np.float32), rng.standard_normal((1, 16)).astype(np.float32)
        save_safetensors(tmp_path / f"u{step}.safetensors", {"layer0.weight/R": left, "layer0.weight/C": right})
        add_update(repo, "low-rank", tmp_path / f"u{step}.safetensors")
        expected = expected.astype(np.float32).astype(np.float64) + left.astype(np.float64) @ right.astype(np.float64)
        entry = entries(repo, "model.safetensors")["layer0.weight"]
        assert entry["update"] == "low-rank" and len(entry["base"]) <= 2
        np.testing.assert_allclose(load(repo / "model.safetensors")["layer0.weight"], expected, rtol=1e-6)
    assert_checks_out_everywhere(repo, tmp_path)
