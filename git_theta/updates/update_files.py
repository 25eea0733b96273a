"""Update files, as ``git theta add --update-path`` reads them: PEFT adapters and the original Git-Theta's naming.

- A PEFT adapter directory (``adapter_config.json`` and ``adapter_model.safetensors``, or ``.bin``):
  LoRA gives ``low-rank`` updates, ``W + s * B @ A`` with ``s = lora_alpha / r`` (``lora_alpha / sqrt(r)`` with
  rsLoRA; ``rank_pattern`` and ``alpha_pattern`` per module; transposed when ``fan_in_fan_out``); IA3 gives ``ia3``
  updates. A module's weight is matched to the checkpoint tensor of the same name, or the one name that ends like it
  (so ``encoder.layer.0.query.weight`` finds ``bert.encoder.layer.0.query.weight``).
- A checkpoint in any supported format whose tensors are named ``<param>/R`` and ``<param>/C`` (low-rank, scale 1),
  ``<param>/ia3``, ``<param>/indices`` with ``<param>/values`` or ``<param>/data`` (sparse, added), or ``<param>``
  itself (dense: the new value).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from git_theta.updates.base import Payload, UpdateError, as_array

_PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"(?P<module>.+)\.lora_(?P<kind>A|B|embedding_A|embedding_B)(?:\.[^.]+)?(?:\.weight)?$")
_IA3_KEY = re.compile(r"(?P<module>.+)\.ia3_l(?:\.[^.]+)?(?:\.weight)?$")


#: Part names of the original tool's update files (``<param>/<part>``).
_PARTS = {"R", "C", "ia3", "indices", "values", "data", "indptr", "shape"}


class UpdateFile:
    """The updates of one update file, each matched to the checkpoint tensor it applies to as tensors arrive."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path, self.kind = path, kind
        self._payloads = read_update_file(path, kind)

    def take(self, name: str) -> Payload | None:
        """Return (once) the update of tensor ``name``: under that name, or a PEFT module name it ends with."""
        if name in self._payloads:
            return self._payloads.pop(name)
        matches = [key for key in self._payloads if name.endswith("." + key) or key.endswith("." + name)]
        if len(matches) > 1:
            raise UpdateError(f"{self.path}: updates {matches[:2]} both match tensor {name!r} of the checkpoint")
        return self._payloads.pop(matches[0]) if matches else None

    def check_all_used(self, checkpoint: str) -> None:
        """Fail when some updates matched no tensor: they would be silently lost."""
        if self._payloads:
            unused = ", ".join(sorted(self._payloads)[:3])
            raise UpdateError(
                f"{self.path}: {len(self._payloads)} update(s) match no tensor of {checkpoint} (first: {unused}); "
                "check that the update belongs to this checkpoint"
            )


def read_update_file(path: Path, kind: str) -> dict[str, Payload]:
    """Return the ``kind`` updates that ``path`` holds, by the tensor (or PEFT module weight) each applies to."""
    if path.is_dir():
        config_file = path / "adapter_config.json"
        if not config_file.is_file():
            raise UpdateError(f"{path} is a directory without adapter_config.json; give a PEFT adapter or a file")
        return _peft(path, _json(config_file), kind)
    return _named(_arrays(path), kind, str(path))


def _peft(directory: Path, config: dict, kind: str) -> dict[str, Payload]:
    peft_type = str(config.get("peft_type", "LORA")).upper()
    weights = _adapter_weights(directory)
    if peft_type == "LORA":
        _expect(kind, "low-rank", f"{directory} is a LoRA adapter")
        return _lora(weights, config, str(directory))
    if peft_type == "IA3":
        _expect(kind, "ia3", f"{directory} is an IA3 adapter")
        return _ia3(weights, config, str(directory))
    raise UpdateError(f"{directory}: PEFT adapters of type {peft_type} are not supported (LoRA and IA3 are)")


def _lora(weights: dict[str, np.ndarray], config: dict, label: str) -> dict[str, Payload]:
    if any("lora_magnitude_vector" in key for key in weights):
        raise UpdateError(f"{label}: DoRA adapters (lora_magnitude_vector) are not supported; merge them with PEFT")
    factors: dict[str, dict[str, np.ndarray]] = {}
    for key, array in weights.items():
        match = _LORA_KEY.fullmatch(key.removeprefix(_PEFT_PREFIX))
        if match is None:
            raise UpdateError(f"{label}: adapter tensor {key!r} is not a LoRA factor; only lora_A/lora_B are supported")
        factors.setdefault(match["module"], {})[match["kind"]] = array
    payloads = {}
    for module, pair in factors.items():
        embedding = "embedding_A" in pair or "embedding_B" in pair
        down, up = (pair.get("embedding_A"), pair.get("embedding_B")) if embedding else (pair.get("A"), pair.get("B"))
        if down is None or up is None:
            raise UpdateError(f"{label}: module {module!r} lacks one of its two LoRA factors")
        rank = int(_pattern(config.get("rank_pattern") or {}, module, config.get("r", down.shape[0])))
        alpha = float(_pattern(config.get("alpha_pattern") or {}, module, config.get("lora_alpha", rank)))
        scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        # Linear: W (out x in) += s * B (out x r) @ A (r x in). Embedding and fan_in_fan_out weights are stored
        # transposed, W (in x out) += s * (B @ A)^T = s * A^T @ B^T.
        transposed = embedding or bool(config.get("fan_in_fan_out"))
        left, right = (down.T, up.T) if transposed else (up, down)
        factors_of_target = {"R": np.ascontiguousarray(left), "C": np.ascontiguousarray(right)}
        payloads[f"{module}.weight"] = Payload(factors_of_target, {"scale": scale})
    return payloads


def _ia3(weights: dict[str, np.ndarray], config: dict, label: str) -> dict[str, Payload]:
    payloads = {}
    for key, array in weights.items():
        match = _IA3_KEY.fullmatch(key.removeprefix(_PEFT_PREFIX))
        if match is None:
            raise UpdateError(f"{label}: adapter tensor {key!r} is not an IA3 vector")
        vector = array.T if config.get("fan_in_fan_out") else array
        payloads[f"{match['module']}.weight"] = Payload({"ia3": np.ascontiguousarray(vector)}, {})
    return payloads


def _named(arrays: dict[str, np.ndarray], kind: str, label: str) -> dict[str, Payload]:
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, array in arrays.items():
        param, slash, part = key.rpartition("/")
        if slash and part in _PARTS:
            groups.setdefault(param, {})[part] = array
        else:
            groups.setdefault(key, {})["value"] = array
    return {param: _named_payload(param, parts, kind, label) for param, parts in groups.items()}


def _named_payload(param: str, parts: dict[str, np.ndarray], kind: str, label: str) -> Payload:
    found = _kind_of(parts)
    if found is None:
        raise UpdateError(f"{label}: the update of {param!r} has parts {sorted(parts)}, which no update type uses")
    _expect(kind, found, f"{label} holds a {found} update for {param!r}")
    if found == "low-rank":
        return Payload({"R": parts["R"], "C": parts["C"]}, {"scale": 1.0})
    if found == "ia3":
        return Payload({"ia3": parts["ia3"]}, {})
    if found == "dense":
        return Payload({"value": parts["value"]}, {})
    values = parts.get("values", parts.get("data"))
    if values is None:
        raise UpdateError(f"{label}: the sparse update of {param!r} has indices but no values (or data)")
    indices = parts["indices"].reshape(-1).astype(np.int64)
    order = np.argsort(indices, kind="stable")
    return Payload({"indices": indices[order], "values": values.reshape(-1)[order]}, {"mode": "add"})


def _kind_of(parts: dict[str, np.ndarray]) -> str | None:
    if {"R", "C"} <= parts.keys():
        return "low-rank"
    for part, kind in (("ia3", "ia3"), ("indices", "sparse"), ("value", "dense")):
        if part in parts:
            return kind
    return None


def _pattern(patterns: dict, module: str, default: object) -> object:
    for key, value in patterns.items():
        if re.fullmatch(rf"(.*\.)?{key}", module):
            return value
    return default


def _expect(kind: str, found: str, what: str) -> None:
    if kind != found:
        raise UpdateError(f"{what}, not {kind}; use --update-type {found}")


def _adapter_weights(directory: Path) -> dict[str, np.ndarray]:
    for name in ("adapter_model.safetensors", "adapter_model.bin"):
        if (directory / name).is_file():
            return _arrays(directory / name)
    raise UpdateError(f"{directory} has no adapter_model.safetensors (or .bin)")


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a checkpoint file in a supported format, as arrays."""
    from git_theta.checkpoints.detect import detect

    if not path.is_file():
        raise UpdateError(f"update file {path} does not exist")
    with open(path, "rb") as stream:
        head = stream.read(4096)
        stream.seek(0)
        _, tensors = detect(str(path), head)().read(stream, str(path))
        return {t.spec.name: as_array(bytes(t.data), t.spec.dtype, t.spec.shape) for t in tensors}


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UpdateError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UpdateError(f"{path} is not a JSON object")
    return data
