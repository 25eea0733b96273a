"""End to end: PEFT adapters over models that transformers saved in shards, checked out as PEFT merges them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import git, save_safetensors, theta

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")


@pytest.fixture
def sharded_repo(installed: Path, tmp_path: Path) -> Path:
    """A repository that tracks ``*.safetensors``, as a Hugging Face model needs."""
    path = tmp_path / "repo"
    path.mkdir()
    git("init", "-q", cwd=path)
    theta("track", "*.safetensors", cwd=path)
    return path


def randomized(model):
    """``model`` with every parameter drawn at random: biases and norms too, which models start at 0 or 1."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(std=0.5)
    return model


def tiny_llama():
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )  # fmt: skip
    return randomized(transformers.LlamaForCausalLM(config))


def tiny_bert():
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48
    )
    return randomized(transformers.BertModel(config, add_pooling_layer=False))


def commit_sharded(repo: Path, model) -> list[str]:
    """Save ``model`` in shards under ``model/`` and commit it; return the shard names."""
    model.save_pretrained(str(repo / "model"), max_shard_size="20KB")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "base model", cwd=repo)
    return sorted(path.name for path in (repo / "model").glob("model-*-of-*.safetensors"))


def checked_out(directory: Path) -> dict[str, np.ndarray]:
    """Every tensor of the shards in ``directory``, as the working tree holds them."""
    from safetensors.numpy import load_file

    return {name: array for path in directory.glob("model-*.safetensors") for name, array in load_file(path).items()}


def merged_by_peft(model, config, adapter: Path):
    """Save the adapter of ``config`` on ``model`` to ``adapter``; return the model PEFT merges, and its weights."""
    wrapped = peft.get_peft_model(model, config)
    with torch.no_grad():  # DoRA's magnitudes start at the weights' norms, which would leave it a plain LoRA
        for name, parameter in wrapped.named_parameters():
            if "lora_magnitude_vector" in name:
                parameter.mul_(torch.rand_like(parameter) + 0.5)
    wrapped.save_pretrained(str(adapter))
    merged = wrapped.merge_and_unload().eval()
    return merged, {k: v.detach().numpy().copy() for k, v in merged.state_dict().items()}


def outputs(model) -> np.ndarray:
    """The model's output on a few tokens."""
    with torch.no_grad():
        result = model(torch.arange(12).reshape(2, 6))
    return (result.logits if hasattr(result, "logits") else result.last_hidden_state).numpy()


def update_types(repo: Path) -> dict[str, dict[str, str]]:
    """Shard -> tensor -> update type, as committed."""
    listing = json.loads(theta("ls", "--json", "HEAD", cwd=repo).stdout)  # a sharded model is one entry
    kinds: dict[str, dict[str, str]] = {}
    for info in listing.values():
        for name, entry in info["tensors"].items():
            kinds.setdefault(Path(entry["shard"]).name, {})[name] = entry.get("update", "dense")
    return kinds


def largest_difference(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> float:
    """The largest difference of two tensors of the same name, relative to the largest element of the expected one."""
    return max(
        float(np.max(np.abs(got[name].astype(np.float64) - expected[name]), initial=0.0))
        / max(float(np.max(np.abs(expected[name]), initial=0.0)), 1e-30)
        for name in got
    )


#: Within float32 rounding: PEFT rounds its float32 product, then the sum; git-theta sums in float64, rounds once.
ROUNDING = 1e-6


def test_lora_over_a_sharded_llama_checks_out_as_peft_merges_it(sharded_repo: Path, tmp_path: Path) -> None:
    repo = sharded_repo
    shards = commit_sharded(repo, tiny_llama())
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens"],
        rank_pattern={"layers.1.self_attn.q_proj": 2},
        alpha_pattern={"down_proj": 3},
        use_rslora=True,
        init_lora_weights=False,
    )
    merged_model, merged = merged_by_peft(tiny_llama(), config, tmp_path / "adapter")

    result = theta("add", "model/", "--update-type", "low-rank", "--update-path", str(tmp_path / "adapter"), cwd=repo)
    git("commit", "-q", "-m", "LoRA", cwd=repo)

    kinds = update_types(repo)
    updated = [shard for shard in shards if "low-rank" in kinds[shard].values()]
    assert len(updated) >= 3  # the adapted modules are spread over the shards
    assert f"staged the low-rank update of {len(updated)} checkpoint(s)".encode() in result.stderr
    assert sum(list(tensors.values()).count("low-rank") for tensors in kinds.values()) == 7
    assert git("status", "--porcelain", cwd=repo).stdout == b""
    got = checked_out(repo / "model")
    assert got.keys() == merged.keys()
    assert largest_difference(got, merged) < ROUNDING
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo), str(clone), cwd=tmp_path)
    assert all(np.array_equal(array, got[name]) for name, array in checked_out(clone / "model").items())
    reloaded = transformers.LlamaForCausalLM.from_pretrained(str(clone / "model")).eval()
    assert largest_difference({k: v.numpy() for k, v in reloaded.state_dict().items()}, merged) < ROUNDING
    assert largest_difference({"logits": outputs(reloaded)}, {"logits": outputs(merged_model)}) < 1e-5


def test_ia3_over_sharded_bert_scales_biases_as_peft_does(sharded_repo: Path, tmp_path: Path) -> None:
    repo = sharded_repo
    shards = commit_sharded(repo, tiny_bert())
    config = peft.IA3Config(
        target_modules=["key", "value", "output.dense"], feedforward_modules=["output.dense"], init_ia3_weights=False
    )
    merged_model, merged = merged_by_peft(tiny_bert(), config, tmp_path / "adapter")

    files = [f"model/{shard}" for shard in shards]  # the shard files, instead of their directory
    theta("add", *files, "--update-type", "ia3", "--update-path", str(tmp_path / "adapter"), cwd=repo)
    git("commit", "-q", "-m", "IA3", cwd=repo)

    kinds = {name: kind for tensors in update_types(repo).values() for name, kind in tensors.items()}
    attention_bias = "encoder.layer.0.attention.self.key.bias"
    assert kinds[attention_bias] == "ia3" and kinds["encoder.layer.0.output.dense.bias"] == "dense"
    got = checked_out(repo / "model")
    assert not np.array_equal(merged[attention_bias], tiny_bert().state_dict()[attention_bias].numpy())
    for name, array in merged.items():  # both round the exact product once
        np.testing.assert_array_equal(got[name], array, err_msg=name)
    reloaded = transformers.BertModel.from_pretrained(str(repo / "model"), add_pooling_layer=False).eval()
    np.testing.assert_array_equal(outputs(reloaded), outputs(merged_model))
    assert git("status", "--porcelain", cwd=repo).stdout == b""


def test_dora_on_sharded_gpt2_conv1d(sharded_repo: Path, tmp_path: Path) -> None:
    repo = sharded_repo

    def gpt2():
        config = transformers.GPT2Config(
            vocab_size=40, n_positions=8, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
        )
        return randomized(transformers.GPT2Model(config))

    commit_sharded(repo, gpt2())
    config = peft.LoraConfig(r=2, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True, use_dora=True,
                             init_lora_weights=False)  # fmt: skip
    _, merged = merged_by_peft(gpt2(), config, tmp_path / "adapter")
    result = theta(
        "add", "model", "--update-type", "low-rank", "--update-path", str(tmp_path / "adapter"), cwd=repo, check=False
    )
    assert result.returncode != 0 and b"is a DoRA adapter (use_dora), not low-rank; use --update-type dora" in (
        result.stderr
    )
    theta("add", "model", "--update-type", "dora", "--update-path", str(tmp_path / "adapter"), cwd=repo)
    git("commit", "-q", "-m", "DoRA", cwd=repo)
    kinds = {name: kind for tensors in update_types(repo).values() for name, kind in tensors.items()}
    assert [kinds[f"h.{i}.{m}.weight"] for i in (0, 1) for m in ("attn.c_attn", "mlp.c_fc")] == ["dora"] * 4
    assert largest_difference(checked_out(repo / "model"), merged) < ROUNDING


def test_an_update_that_fails_in_one_shard_stages_nothing(sharded_repo: Path, tmp_path: Path) -> None:
    repo = sharded_repo
    (repo / "model").mkdir()
    rng = np.random.default_rng(0)
    first = {"w1": rng.standard_normal((4, 4), dtype=np.float32), "counts": np.arange(16, dtype=np.int32).reshape(4, 4)}
    save_safetensors(repo / "model" / "model-00001-of-00002.safetensors", first)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "first shard", cwd=repo)
    save_safetensors(repo / "model" / "model-00002-of-00002.safetensors", {"w2": np.ones((4, 4), np.float32)})
    factors = {f"{name}/{part}": np.ones(shape, np.float32) for name in ("w2", "counts")
               for part, shape in (("R", (4, 1)), ("C", (1, 4)))}  # fmt: skip
    save_safetensors(tmp_path / "update.safetensors", factors)  # counts: integers, which low-rank cannot update
    before = {path.name: path.read_bytes() for path in (repo / "model").iterdir()}

    # The new shard is added by one git add, the committed one by a second (--renormalize): the second fails.
    result = theta(
        "add", "model", "--update-type", "low-rank", "--update-path", str(tmp_path / "update.safetensors"), cwd=repo,
        check=False,
    )  # fmt: skip

    assert result.returncode != 0
    assert b"model-00001-of-00002.safetensors: this update needs floating-point tensors" in result.stderr
    assert git("diff", "--cached", "--name-only", cwd=repo).stdout == b""
    assert git("status", "--porcelain", cwd=repo).stdout == b"?? model/model-00002-of-00002.safetensors\n"
    assert {path.name: path.read_bytes() for path in (repo / "model").iterdir()} == before
    assert not (repo / ".git" / "index.lock").exists()

    one = repo / "model" / "model-00001-of-00002.safetensors"
    result = theta(
        "add", str(one), "--update-type", "low-rank", "--update-path", str(tmp_path / "update.safetensors"), cwd=repo,
        check=False,
    )  # fmt: skip
    assert b"1 update(s) match no tensor of model/model-00001-of-00002.safetensors (first: w2)" in result.stderr
    assert b"add all its shards together (or their directory)" in result.stderr
