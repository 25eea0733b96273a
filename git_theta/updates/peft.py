"""PEFT adapter directories, read into the updates that PEFT's ``merge_and_unload`` applies (peft/tuners/lora/layer.py,
lora/variants.py and ia3/layer.py):

- LoRA: ``W + s * B @ A`` with ``s = lora_alpha / r``, or ``lora_alpha / sqrt(r)`` with ``use_rslora``;
  ``rank_pattern`` and ``alpha_pattern`` set ``r`` and ``lora_alpha`` per module. Embeddings and ``fan_in_fan_out``
  layers (GPT-2's Conv1D) store the weight transposed; conv kernels are seen as out x (in * kh * kw). With
  ``lora_bias``, ``s * lora_B.bias`` is added to the bias.
- DoRA (``use_dora``): the LoRA sum, each output feature then scaled to its learned magnitude (``dora``).
- IA3: the weight times ``ia3_l``, which scales output features (input features of ``feedforward_modules``); the
  bias of a module that is not feed-forward is scaled by it too.
- Every other tensor of the adapter (``modules_to_save``, ``bias="all"`` or ``"lora_only"``) is the new value of the
  parameter of that name.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from git_theta.updates.base import Payload, TensorUpdate, UpdateError, Updates, expect_kind, read_arrays

_PREFIX = "base_model.model."
_LORA = re.compile(r"(?P<module>.+)\.lora_(?P<part>A|B)(?:\.[^.]+)?\.(?P<param>weight|bias)")
_EMBEDDING = re.compile(r"(?P<module>.+)\.lora_embedding_(?P<part>A|B)(?:\.[^.]+)?")
_MAGNITUDE = re.compile(r"(?P<module>.+)\.lora_magnitude_vector(?:\.[^.]+)?(?:\.weight)?")
_IA3 = re.compile(r"(?P<module>.+)\.ia3_l(?:\.[^.]+)?(?:\.weight)?")
#: LoRA options whose adapters do more than add to existing weights (or only apply to quantized models).
_UNSUPPORTED = (
    "layer_replication",
    "target_parameters",
    "trainable_token_indices",
    "alora_invocation_tokens",
    "use_qalora",
)
_LORA_PARTS = {"A", "B", "B.bias", "embedding_A", "embedding_B", "magnitude"}


def read_adapter(directory: Path, config: dict, kind: str) -> Updates:
    """The updates of a PEFT adapter directory, by ``<module>.weight`` (or the parameter's name) as PEFT names them."""
    peft_type = str(config.get("peft_type", "LORA")).upper()
    weights = {key.removeprefix(_PREFIX): array for key, array in _adapter_weights(directory).items()}
    label = str(directory)
    if peft_type == "LORA":
        dora = any(_MAGNITUDE.fullmatch(key) for key in weights)
        what = f"{label} is a DoRA adapter (use_dora)" if dora else f"{label} is a LoRA adapter"
        expect_kind(kind, "dora" if dora else "low-rank", what)
        return _lora(weights, config, label)
    if peft_type == "IA3":
        expect_kind(kind, "ia3", f"{label} is an IA3 adapter")
        return _ia3(weights, config, label)
    raise UpdateError(f"{label}: PEFT adapters of type {peft_type} are not supported (LoRA, DoRA and IA3 are)")


def _lora(weights: dict[str, np.ndarray], config: dict, label: str) -> Updates:
    for option in _UNSUPPORTED:
        if config.get(option):
            raise UpdateError(
                f"{label}: LoRA adapters with {option} are not supported; merge it with PEFT (merge_and_unload) "
                "and git add the merged model"
            )
    modules: dict[str, dict[str, np.ndarray]] = {}
    values: dict[str, np.ndarray] = {}
    for key, array in weights.items():
        found = _lora_part(key)
        if found is None:
            _add(values, _parameter(key, label), array, label)
        else:
            modules.setdefault(found[0], {})[found[1]] = array
    updates: dict[str, TensorUpdate] = {}
    for module, parts in modules.items():
        for name, update in _lora_module(module, parts, config, label).items():
            # A saved value of an adapted parameter is what the LoRA applies to (PEFT saves the embedding layers
            # it adapts, and trained biases), as PEFT loads it into the base layer before merging.
            updates[name] = update._replace(base=values.pop(name, None))
    for name, value in values.items():
        _add(updates, name, TensorUpdate("dense", Payload({"value": value}, {})), label)
    return Updates(updates, {})


def _lora_module(module: str, parts: dict[str, np.ndarray], config: dict, label: str) -> dict[str, TensorUpdate]:
    unknown = sorted(set(parts) - _LORA_PARTS)
    if unknown:
        raise UpdateError(
            f"{label}: module {module!r} has LoRA tensors of a kind git theta add does not know ({unknown[0]})"
        )
    embedding = "embedding_A" in parts or "embedding_B" in parts
    down, up = (parts.get("embedding_A"), parts.get("embedding_B")) if embedding else (parts.get("A"), parts.get("B"))
    if down is None or up is None:
        raise UpdateError(f"{label}: module {module!r} lacks one of its two LoRA factors")
    rank = int(_pattern(config.get("rank_pattern") or {}, module, config.get("r", down.shape[0])))
    alpha = float(_pattern(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", rank)))
    scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
    # Linear: W (out x in) += s * B (out x r) @ A (r x in); conv: B and A seen as matrices. Embeddings and
    # fan_in_fan_out weights are stored transposed: W (in x out) += s * (B @ A)^T = s * A^T @ B^T.
    up, down = up.reshape(up.shape[0], -1), down.reshape(down.shape[0], -1)
    transposed = embedding or bool(config.get("fan_in_fan_out"))
    left, right = (down.T, up.T) if transposed else (up, down)
    factors = {"R": np.ascontiguousarray(left), "C": np.ascontiguousarray(right)}
    updates = {f"{module}.weight": TensorUpdate("low-rank", Payload(factors, {"scale": scale}))}
    magnitude = parts.get("magnitude")
    if magnitude is not None:  # one magnitude per output feature: rows, or columns when stored transposed
        dora = Payload({**factors, "magnitude": magnitude.reshape(-1)}, {"scale": scale, "axis": int(transposed)})
        updates[f"{module}.weight"] = TensorUpdate("dora", dora)
    bias = parts.get("B.bias")
    if bias is not None:  # lora_bias: PEFT adds s * lora_B.bias, a rank-1 update of the bias seen as a column
        column = Payload({"R": bias.reshape(-1, 1), "C": np.ones((1, 1), bias.dtype)}, {"scale": scale})
        updates[f"{module}.bias"] = TensorUpdate("low-rank", column)
    return updates


def _lora_part(key: str) -> tuple[str, str] | None:
    """A LoRA tensor's module and part: ``A``, ``B``, ``B.bias``, ``embedding_A``, ``embedding_B``, ``magnitude``."""
    if match := _LORA.fullmatch(key):
        return match["module"], match["part"] + (".bias" if match["param"] == "bias" else "")
    if match := _EMBEDDING.fullmatch(key):
        return match["module"], f"embedding_{match['part']}"
    if match := _MAGNITUDE.fullmatch(key):
        return match["module"], "magnitude"
    return None


def _ia3(weights: dict[str, np.ndarray], config: dict, label: str) -> Updates:
    updates: dict[str, TensorUpdate] = {}
    biases: dict[str, TensorUpdate] = {}
    for key, array in weights.items():
        match = _IA3.fullmatch(key)
        if match is None:
            _add(updates, _parameter(key, label), TensorUpdate("dense", Payload({"value": array}, {})), label)
            continue
        module = match["module"]
        feedforward = _is_feedforward(config, module, array, label)
        vector = _ia3_of_weight(array, feedforward, bool(config.get("fan_in_fan_out")))
        _add(updates, f"{module}.weight", TensorUpdate("ia3", Payload({"ia3": vector}, {})), label)
        if not feedforward:  # PEFT scales the bias of the module's outputs too: b * l
            biases[f"{module}.bias"] = TensorUpdate(
                "ia3", Payload({"ia3": np.ascontiguousarray(array.reshape(-1))}, {})
            )
    return Updates(updates, biases)


def _ia3_of_weight(vector: np.ndarray, feedforward: bool, fan_in_fan_out: bool) -> np.ndarray:
    """``ia3_l`` shaped to broadcast over the weight: (out, 1) scales rows and (1, in) columns; a conv's (1, C, 1, 1)
    scales input channels, or output channels once its first two axes are swapped."""
    if vector.ndim > 2:
        return np.ascontiguousarray(vector if feedforward else vector.swapaxes(0, 1))
    return np.ascontiguousarray(vector.T if fan_in_fan_out else vector)


def _is_feedforward(config: dict, module: str, vector: np.ndarray, label: str) -> bool:
    """PEFT's rule (IA3Model._check_target_module_feedforward): a regex must match the whole module name, a list
    entry must end it."""
    modules = config.get("feedforward_modules")
    if isinstance(modules, str):
        return re.fullmatch(modules, module) is not None
    if isinstance(modules, list):
        return any(module.endswith(entry) for entry in modules)
    if vector.ndim == 2:  # (1, in) for feed-forward modules, (out, 1) for the others
        return vector.shape[0] == 1 and vector.shape[1] != 1
    raise UpdateError(f"{label}: adapter_config.json names no feedforward_modules; add them as PEFT saved them")


def _parameter(key: str, label: str) -> str:
    """The parameter a full tensor of the adapter replaces (``.base_layer`` is the wrapped layer's own)."""
    if "lora_" in key or "ia3_" in key or "trainable_tokens" in key:
        raise UpdateError(f"{label}: adapter tensor {key!r} is of a kind git theta add does not support")
    return key.replace(".base_layer.", ".")


def _add(updates: dict[str, Any], name: str, update: Any, label: str) -> None:
    if name in updates:
        raise UpdateError(f"{label}: the adapter holds two updates of {name!r}")
    updates[name] = update


def _pattern(patterns: dict, module: str, default: Any) -> Any:
    """PEFT's get_pattern_key: the first key that matches the end of the module name, after a dot."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _adapter_weights(directory: Path) -> dict[str, np.ndarray]:
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (directory / name).is_file():
            return read_arrays(directory / name)
    raise UpdateError(f"{directory} has no adapter_model.safetensors (or .bin)")
