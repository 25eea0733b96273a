"""Which tensor of which checkpoint each update applies to, for one update file and all the files added with it.

A model saved in shards spreads the modules of one adapter over several files: each update is matched against the
tensors of every file, so each shard gets the updates of its own tensors. An update name matches the tensor of the
same name, else the one tensor whose name ends with it after a dot, or that it ends with (so ``bert.`` prefixes do
not matter). An update that matches no tensor, or several, fails the add before anything is staged, as does one that
does not fit its tensor's shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from git_theta import plugins
from git_theta.checkpoints.base import TensorSpec
from git_theta.dtypes import dtype_name
from git_theta.updates.base import TensorUpdate, UpdateError, Updates

#: Checkpoint path -> tensor name -> the update to apply to it.
Plan = dict[str, dict[str, TensorUpdate]]
_Place = tuple[str, TensorSpec]


def checkpoint_specs(path: Path, checkpoint_type: str | None = None) -> list[TensorSpec]:
    """The tensors of a checkpoint file (for safetensors, from its header alone)."""
    from git_theta.checkpoints.detect import detect

    with open(path, "rb") as stream:
        head = stream.read(4096)
        stream.seek(0)
        return detect(str(path), head, checkpoint_type)().specs(stream, str(path))


def plan_updates(updates: Updates, checkpoints: Mapping[str, list[TensorSpec]], label: str) -> Plan:
    """Match every update of ``updates`` (read from ``label``) to one tensor of ``checkpoints`` (path -> tensors)."""
    names = _Names(checkpoints)
    plan: Plan = {path: {} for path in checkpoints}
    placed: dict[str, _Place] = {}
    unmatched = []
    for key, update in updates.required.items():
        place = names.find(key, label)
        if place is None:
            unmatched.append(key)
            continue
        _assign(plan, place, key, update, label)
        placed[key] = place
    if unmatched:
        raise UpdateError(_unmatched_message(label, unmatched, list(checkpoints)))
    for key, update in updates.optional.items():
        place = _follower(names, placed.get(key.removesuffix(".bias") + ".weight"))
        if place is not None:
            _assign(plan, place, key, update, label)
    return plan


class _Names:
    """Every tensor of the checkpoints, by name and by each dotted suffix of its name."""

    def __init__(self, checkpoints: Mapping[str, list[TensorSpec]]) -> None:
        self.exact: dict[str, list[_Place]] = {}
        self.suffixes: dict[str, list[_Place]] = {}
        for path, specs in checkpoints.items():
            for spec in specs:
                self.exact.setdefault(spec.name, []).append((path, spec))
                for suffix in _dotted_suffixes(spec.name):
                    self.suffixes.setdefault(suffix, []).append((path, spec))

    def find(self, key: str, label: str) -> _Place | None:
        """The one tensor ``key`` names; fail when it names several."""
        found = self.exact.get(key) or self.suffixes.get(key, []) + [
            place for suffix in _dotted_suffixes(key) for place in self.exact.get(suffix, [])
        ]
        if len(found) > 1:
            (first, one), (second, other) = found[:2]
            raise UpdateError(
                f"{label}: the update of {key!r} matches both {one.name!r} ({first}) and {other.name!r} ({second}); "
                "add the checkpoints it belongs to separately"
            )
        return found[0] if found else None


def _follower(names: _Names, anchor: _Place | None) -> _Place | None:
    """The bias of the module whose weight is ``anchor``, in whichever file holds it, if it has one."""
    if anchor is None or not anchor[1].name.endswith("weight"):
        return None
    found = names.exact.get(anchor[1].name.removesuffix("weight") + "bias", [])
    return found[0] if len(found) == 1 else None


def _assign(plan: Plan, place: _Place, key: str, update: TensorUpdate, label: str) -> None:
    path, spec = place
    if spec.name in plan[path]:
        raise UpdateError(f"{label}: two updates match tensor {spec.name!r} of {path} (one is {key!r})")
    problem = plugins.load(plugins.UPDATES, update.kind)().mismatch(spec.shape, update.payload)
    base = (dtype_name(update.base.dtype), update.base.shape) if update.base is not None else None
    if base is not None and base != (spec.dtype, spec.shape):
        problem = f"the value it applies to is {base[0]} {base[1]}, not {spec.dtype} {spec.shape}"
    if problem:
        raise UpdateError(f"{label}: the update of {key!r} does not fit tensor {spec.name!r} of {path}: {problem}")
    plan[path][spec.name] = update


def _dotted_suffixes(name: str) -> list[str]:
    """``a.b.c`` -> ``b.c``, ``c``: what follows each dot."""
    return [name[index + 1 :] for index, char in enumerate(name) if char == "."]


def _unmatched_message(label: str, unmatched: list[str], paths: list[str]) -> str:
    first = ", ".join(sorted(unmatched)[:3])
    where = paths[0] if len(paths) == 1 else f"the {len(paths)} checkpoints added ({', '.join(sorted(paths)[:2])}, ...)"
    hint = "check that the update belongs to this checkpoint"
    if len(paths) == 1 and "-of-" in paths[0]:
        hint += ", and add all its shards together (or their directory)"
    return f"{label}: {len(unmatched)} update(s) match no tensor of {where} (first: {first}); {hint}"
