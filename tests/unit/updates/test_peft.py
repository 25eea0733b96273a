"""PEFT adapters read as git-theta updates give PEFT's own ``merge_and_unload`` weights, for every module kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from git_theta import plugins
from git_theta.checkpoints.base import TensorSpec
from git_theta.dtypes import dtype_name
from git_theta.updates.base import UpdateError
from git_theta.updates.plan import plan_updates
from git_theta.updates.update_files import read_update_file
from tests.needs import TORCH, needs_module

torch = needs_module("torch", TORCH)
transformers = needs_module("transformers", "pip install transformers")
peft = needs_module("peft", "pip install peft")
nn = torch.nn


class Tiny(nn.Module):
    """One module of each kind PEFT adapts: an embedding, a conv, linear layers with and without bias, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(24, 8)
        self.conv = nn.Conv2d(2, 4, 3)
        self.pool = nn.Conv2d(4, 4, 1)
        self.attn = nn.Linear(8, 8)
        self.up = nn.Linear(8, 12)
        self.down = nn.Linear(12, 8, bias=False)
        self.head = nn.Linear(8, 3)


def tiny() -> Tiny:
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        for parameter in model.parameters():  # biases too: PyTorch and transformers may start them at zero
            parameter.normal_()
    return model


def tiny_gpt2():
    torch.manual_seed(1)
    config = transformers.GPT2Config(
        vocab_size=40, n_positions=8, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2Model(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()
    return model


def state_of(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if v.is_floating_point()}


def trained(wrapped):
    """Move DoRA's magnitudes off their start (the norms of the weights, which would leave DoRA a plain LoRA)."""
    torch.manual_seed(2)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_magnitude_vector" in name:
                parameter.mul_(torch.rand_like(parameter) + 0.5)
    return wrapped


def adapted(model, config, directory: Path) -> dict[str, np.ndarray]:
    """Save the adapter of ``config`` on ``model``; return PEFT's merged weights."""
    wrapped = trained(peft.get_peft_model(model, config))
    wrapped.save_pretrained(str(directory))
    return state_of(wrapped.merge_and_unload())


def applied(directory: Path, kind: str, base: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """git-theta's weights: the adapter's updates matched to ``base`` and applied; and the update type of each."""
    specs = {"model.safetensors": [TensorSpec(n, dtype_name(a.dtype), a.shape) for n, a in base.items()]}
    plan = plan_updates(read_update_file(directory, kind), specs, str(directory))["model.safetensors"]
    weights = dict(base)
    for name, update in plan.items():
        weights[name] = plugins.load(plugins.UPDATES, update.kind)().apply(base[name], update.payload)
    return weights, {name: update.kind for name, update in plan.items()}


def largest_difference(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> float:
    assert got.keys() == expected.keys()
    return max(float(np.max(np.abs(got[n].astype(np.float64) - expected[n]), initial=0.0)) for n in got)


def test_lora_with_rslora_patterns_bias_and_modules_to_save(tmp_path: Path) -> None:
    model = tiny()
    base = state_of(model)
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["embed", "conv", "attn", "up", "down"],
        rank_pattern={"up": 2, "conv": 3},
        alpha_pattern={"down": 3, "embed": 5},
        use_rslora=True,
        modules_to_save=["head"],
        init_lora_weights=False,
    )
    wrapped = peft.get_peft_model(model, config)
    with torch.no_grad():
        wrapped.base_model.model.head.modules_to_save["default"].weight.add_(1.0)  # a trained copy of the head
    wrapped.save_pretrained(str(tmp_path / "adapter"))
    merged = state_of(wrapped.merge_and_unload())
    got, kinds = applied(tmp_path / "adapter", "low-rank", base)
    assert kinds == {
        **{f"{m}.weight": "low-rank" for m in ("embed", "conv", "attn", "up", "down")},
        "head.weight": "dense",
        "head.bias": "dense",
    }
    assert largest_difference(got, merged) < 2e-5  # PEFT rounds a float32 product, then the sum; we round once
    np.testing.assert_array_equal(got["head.weight"], merged["head.weight"])


@pytest.mark.filterwarnings("ignore:.*invalid shape")  # PEFT mistakes lora_B.bias for a sharded factor
def test_lora_bias_is_added_to_the_bias(tmp_path: Path) -> None:
    model = tiny()
    base = state_of(model)
    config = peft.LoraConfig(r=2, target_modules=["attn", "up"], lora_bias=True, init_lora_weights=False)
    wrapped = peft.get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name and name.endswith("bias"):
                parameter.normal_()
    wrapped.save_pretrained(str(tmp_path / "adapter"))
    merged = state_of(wrapped.merge_and_unload())
    got, kinds = applied(tmp_path / "adapter", "low-rank", base)
    assert kinds["attn.bias"] == kinds["up.bias"] == "low-rank"
    assert not np.array_equal(merged["up.bias"], base["up.bias"])
    assert largest_difference(got, merged) < 2e-5


def test_dora_on_every_module_kind(tmp_path: Path) -> None:
    model = tiny()
    base = state_of(model)
    config = peft.LoraConfig(
        r=3, lora_alpha=6, target_modules=["embed", "conv", "attn", "up"], use_dora=True, init_lora_weights=False
    )
    merged = adapted(model, config, tmp_path / "adapter")
    got, kinds = applied(tmp_path / "adapter", "dora", base)
    assert set(kinds.values()) == {"dora"} and len(kinds) == 4
    assert largest_difference(got, merged) < 2e-5


def test_ia3_scales_weights_and_the_biases_of_non_feed_forward_modules(tmp_path: Path) -> None:
    model = tiny()
    base = state_of(model)
    config = peft.IA3Config(
        target_modules=["conv", "pool", "attn", "up", "down"],
        feedforward_modules=["pool", "down"],
        init_ia3_weights=False,
    )
    merged = adapted(model, config, tmp_path / "adapter")
    got, kinds = applied(tmp_path / "adapter", "ia3", base)
    assert {"conv.bias", "attn.bias", "up.bias"} <= kinds.keys() and "pool.bias" not in kinds
    for name in base:  # both round the exact product once
        np.testing.assert_array_equal(got[name], merged[name], err_msg=name)


def test_gpt2_conv1d_fan_in_fan_out(tmp_path: Path) -> None:
    base = state_of(tiny_gpt2())
    configs = {
        "low-rank": peft.LoraConfig(
            r=2, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True, init_lora_weights=False
        ),
        "dora": peft.LoraConfig(
            r=2, target_modules=["c_attn"], fan_in_fan_out=True, use_dora=True, init_lora_weights=False
        ),
        "ia3": peft.IA3Config(
            target_modules=["c_attn", "mlp.c_proj"],
            feedforward_modules=["mlp.c_proj"],
            fan_in_fan_out=True,
            init_ia3_weights=False,
        ),
    }
    for kind, config in configs.items():
        merged = adapted(tiny_gpt2(), config, tmp_path / kind)
        got, kinds = applied(tmp_path / kind, kind, base)
        assert kinds["h.0.attn.c_attn.weight"] == kind
        assert largest_difference(got, merged) <= (0.0 if kind == "ia3" else 2e-5), kind
    assert "h.0.attn.c_attn.bias" in kinds and "h.0.mlp.c_proj.bias" not in kinds  # IA3: the attention's bias only


def test_adapters_of_unsupported_options_are_refused_in_one_line(tmp_path: Path) -> None:
    peft.get_peft_model(tiny(), peft.LoraConfig(r=2, target_modules=["attn"])).save_pretrained(str(tmp_path / "a"))
    config = tmp_path / "a" / "adapter_config.json"
    config.write_text(config.read_text().replace('"layer_replication": null', '"layer_replication": [[0, 1]]'))
    with pytest.raises(UpdateError, match=r"LoRA adapters with layer_replication are not supported"):
        read_update_file(tmp_path / "a", "low-rank")
    with pytest.raises(UpdateError, match=r"is a LoRA adapter, not dora; use --update-type low-rank"):
        read_update_file(tmp_path / "a", "dora")
