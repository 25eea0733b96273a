"""PyTorch checkpoints (``torch.save`` files): nested state dicts, loaded only with ``weights_only=True``.

torch is optional and imported only here, when such a file is read or written. The round trip is exact for every
tensor's dtype, shape and bytes; the container is re-saved by torch, so the file's bytes may differ from the original
(and storage shared between tensors is not preserved).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from git_theta.checkpoints.base import Checkpoint, CheckpointError, Tensor, TensorSpec
from git_theta.checkpoints.spool import copy_out, first_zip_member, is_zip, scratch_file, spool
from git_theta.checkpoints.torch_zip import Clamped, check_records
from git_theta.dtypes import BY_FRAMEWORK_NAME
from git_theta.metadata import MetadataError
from git_theta.plugins import PluginError

#: torch dtype attribute name -> git-theta dtype name (attributes missing from older torch are skipped).
DTYPES = BY_FRAMEWORK_NAME
SEPARATOR = "/"
PRIMITIVES = (int, float, str, bool, type(None))
#: What walking a structure that metadata corruption reshaped can raise (a list for a dict, a missing key, ...).
STRUCTURE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError)


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise PluginError(
            "reading PyTorch checkpoints needs torch; install it: pip install 'git-theta[torch]'"
        ) from exc
    return torch


class TorchCheckpoint(Checkpoint):
    """``torch.save`` files holding (nested) dicts, lists and tuples of tensors and plain values."""

    name = "torch"
    extensions = (".pt", ".pth", ".bin")

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        member = first_zip_member(head)
        return member.endswith("/data.pkl") or member.endswith("/.format_version") or member.endswith("/byteorder")

    def read(self, stream: BinaryIO, label: str) -> tuple[dict[str, Any], Iterator[Tensor]]:
        torch = _torch()
        spooled = spool(stream)
        mmap = is_zip(spooled.read(4))
        spooled.seek(0)
        try:
            if mmap:
                check_records(spooled, label)
            source = spooled.name if mmap else Clamped(spooled)
            obj = torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
        except CheckpointError:
            spooled.close()
            raise
        except Exception as exc:  # torch raises many types for hostile or broken files
            spooled.close()
            raise CheckpointError(f"{label}: {_load_failure(exc)}") from exc
        tensors: list[tuple[str, Any]] = []
        structure = _describe(obj, "", tensors, torch, label)
        return {"structure": structure}, _emit(tensors, spooled, torch, label)

    def write(
        self,
        format_data: dict[str, Any],
        specs: list[TensorSpec],
        tensors: Iterable[bytes | bytearray | memoryview],
        out: BinaryIO,
    ) -> None:
        torch = _torch()
        structure = _stored_structure(format_data, specs)
        by_name = {spec.name: _to_tensor(spec, data, torch) for spec, data in zip(specs, tensors, strict=True)}
        try:
            obj = _rebuild(structure, by_name)
        except STRUCTURE_ERRORS as exc:
            raise MetadataError(f"the stored PyTorch structure is invalid ({type(exc).__name__}: {exc})") from exc
        with scratch_file() as target:
            torch.save(obj, target)
            copy_out(target, out)

    @classmethod
    def rebuild_format(
        cls, format_data: dict[str, Any], old_specs: list[TensorSpec], new_specs: list[TensorSpec]
    ) -> tuple[dict[str, Any], list[TensorSpec]]:
        """Drop removed tensors from the structure and add new ones in nested dicts named by their path."""
        names = {spec.name for spec in new_specs}
        structure = _prune(format_data["structure"], names)
        present: list[str] = []
        _tensor_names(structure, present)
        for spec in new_specs:
            if spec.name not in present:
                structure = _insert(structure, spec.name.split(SEPARATOR), spec.name)
        order: list[str] = []
        _tensor_names(structure, order)
        by_name = {spec.name: spec for spec in new_specs}
        return {**format_data, "structure": structure}, [by_name[name] for name in order]


def _stored_structure(format_data: dict[str, Any], specs: list[TensorSpec]) -> Any:
    """The structure from the metadata, checked to hold exactly the tensors of ``specs``."""
    names: list[str] = []
    try:
        _tensor_names(format_data["structure"], names)
    except STRUCTURE_ERRORS as exc:
        raise MetadataError(f"the stored PyTorch structure is invalid ({type(exc).__name__}: {exc})") from exc
    if sorted(map(str, names)) != sorted(spec.name for spec in specs):
        raise MetadataError("the stored PyTorch structure does not match the metadata's tensor list")
    return format_data["structure"]


def _prune(node: Any, names: set[str]) -> Any:
    """``node`` without the tensors not in ``names`` (an element of a list or tuple cannot be removed)."""
    if "dict" in node:
        kept = [[key, _prune(value, names)] for key, value in node["dict"] if _keeps(value, names)]
        return {"dict": kept}
    for kind in ("list", "tuple"):
        if kind in node:
            if not all(_keeps(value, names) for value in node[kind]):
                raise CheckpointError("a merge cannot remove a tensor held in a list or tuple of a PyTorch checkpoint")
            return {kind: [_prune(value, names) for value in node[kind]]}
    return node


def _keeps(node: Any, names: set[str]) -> bool:
    return "tensor" not in node or node["tensor"] in names


def _insert(node: Any, parts: list[str], name: str) -> Any:
    """``node`` with the tensor ``name`` added at the dict path ``parts``, creating dicts as needed."""
    if "dict" not in node:
        raise CheckpointError(f"a merge cannot add tensor {name!r}: its place in the PyTorch checkpoint is not a dict")
    items = [list(item) for item in node["dict"]]
    for item in items:
        if str(item[0]) == parts[0]:
            if len(parts) == 1:
                raise CheckpointError(f"a merge cannot add tensor {name!r}: its place is taken")
            item[1] = _insert(item[1], parts[1:], name)
            return {"dict": items}
    child: dict[str, Any] = {"tensor": name}
    for part in reversed(parts[1:]):
        child = {"dict": [[part, child]]}
    return {"dict": [*items, [parts[0], child]]}


def _tensor_names(node: Any, out: list[str]) -> None:
    """Append the tensor names of ``node`` in the order ``read`` lists them."""
    if "tensor" in node:
        out.append(node["tensor"])
    for kind in ("dict", "list", "tuple"):
        for value in node.get(kind, ()):
            _tensor_names(value[1] if kind == "dict" else value, out)


def _load_failure(exc: Exception) -> str:
    message = str(exc)
    if any(word in message.lower() for word in ("unsupported global", "unsupported class", "is blocked")):
        return (
            "git-theta cannot load it safely: it holds Python objects other than tensors and plain containers, "
            "and git-theta never unpickles those (re-save only the state dict)"
        )
    first = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
    return f"not a PyTorch checkpoint git-theta can read ({first[:200]}); check the file or re-save it with torch.save"


def _describe(obj: Any, name: str, tensors: list[tuple[str, Any]], torch: Any, label: str) -> Any:
    """Return the JSON structure of ``obj``, appending its tensors to ``tensors`` with their flat names."""
    if isinstance(obj, torch.Tensor):
        tensors.append((name, obj))
        return {"tensor": name}
    if isinstance(obj, dict):
        if not all(isinstance(key, (str, int)) for key in obj):
            raise CheckpointError(f"{label}: dict at {name or 'top level'!r} has keys that are not strings or ints")
        items = [[key, _describe(value, _join(name, key), tensors, torch, label)] for key, value in obj.items()]
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [_describe(value, _join(name, i), tensors, torch, label) for i, value in enumerate(obj)]}
    if isinstance(obj, PRIMITIVES):
        return {"value": obj}
    raise CheckpointError(
        f"{label}: {name or 'the top level'!r} holds a {type(obj).__name__}, which git-theta cannot store"
    )


def _join(prefix: str, key: str | int) -> str:
    return f"{prefix}{SEPARATOR}{key}" if prefix else str(key)


def _emit(tensors: list[tuple[str, Any]], spooled: Any, torch: Any, label: str) -> Iterator[Tensor]:
    try:
        for name, tensor in tensors:
            dtype = DTYPES.get(str(tensor.dtype).removeprefix("torch."))
            if dtype is None or tensor.layout != torch.strided or tensor.is_quantized:
                raise CheckpointError(f"{label}: tensor {name!r} ({tensor.dtype}, {tensor.layout}) is not supported")
            _check_size(tensor, name, label)
            flat = tensor.detach().resolve_conj().resolve_neg().contiguous().reshape(-1)
            data = flat.view(torch.uint8).numpy() if flat.numel() else b""
            yield Tensor(TensorSpec(name, dtype, tuple(tensor.shape)), memoryview(data).cast("B"))
    finally:
        spooled.close()


def _check_size(tensor: Any, name: str, label: str) -> None:
    """Refuse a view with more bytes than its storage holds (strides of 0): a few bytes in the file, unbounded here."""
    size, held = tensor.numel() * tensor.element_size(), tensor.untyped_storage().nbytes()
    if size > held:
        raise CheckpointError(
            f"{label}: tensor {name!r} is an expanded view of {held} bytes as {size}; "
            "save tensor.contiguous() instead, which holds its values"
        )


def _to_tensor(spec: TensorSpec, data: bytes | bytearray | memoryview, torch: Any) -> Any:
    dtype = getattr(torch, next(attr for attr, name in DTYPES.items() if name == spec.dtype))
    if len(data) == 0:
        return torch.empty(spec.shape, dtype=dtype)
    buffer = data if isinstance(data, bytearray) else bytearray(data)
    return torch.frombuffer(buffer, dtype=torch.uint8).view(dtype).reshape(spec.shape)


def _rebuild(node: Any, tensors: dict[str, Any]) -> Any:
    if "tensor" in node:
        return tensors[node["tensor"]]
    if "dict" in node:
        return {key: _rebuild(value, tensors) for key, value in node["dict"]}
    if "list" in node:
        return [_rebuild(value, tensors) for value in node["list"]]
    if "tuple" in node:
        return tuple(_rebuild(value, tensors) for value in node["tuple"])
    return node["value"]
