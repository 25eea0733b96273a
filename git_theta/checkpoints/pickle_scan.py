"""What a pickle refers to outside itself, read without unpickling it: its persistent ids (how torch names storages).

The opcodes are only parsed (``pickletools.genops``) and their effect on the stack simulated from pickletools' own
table: strings, integers, globals (as ``"module name"`` text), tuples and the memo are followed; every other value is
an opaque placeholder. Nothing is imported, called or built.
"""

from __future__ import annotations

import pickletools
import struct
from typing import Any, cast

from git_theta.checkpoints.base import CheckpointError

_MARK = object()
_OPAQUE = object()
_PUSH_ARG = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING", "SHORT_BINSTRING",
    "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
}  # fmt: skip
_TUPLES = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}


def persistent_ids(data: bytes) -> list[Any]:
    """Every persistent id in the pickle ``data``, in order; raise ValueError when it is not a well-formed pickle."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    found: list[Any] = []
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name == "MARK":
            stack.append(_MARK)
        elif name in _PUSH_ARG:
            stack.append(arg)
        elif name == "GLOBAL":
            stack.append(str(arg))
        elif name == "STACK_GLOBAL":
            attribute, module = _pop(stack), _pop(stack)
            stack.append(f"{module} {attribute}" if isinstance(module, str) and isinstance(attribute, str) else _OPAQUE)
        elif name == "TUPLE":
            stack.append(tuple(_pop_to_mark(stack)))
        elif name in _TUPLES:
            items = [_pop(stack) for _ in range(_TUPLES[name])]
            stack.append(tuple(reversed(items)))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):  # pickletools parses their argument as an int
            memo[len(memo) if name == "MEMOIZE" else cast(int, arg)] = _top(stack)
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(cast(int, arg), _OPAQUE))
        elif name == "BINPERSID":
            found.append(_pop(stack))
            stack.append(_OPAQUE)
        else:
            _apply(opcode, stack)
    return found


def _apply(opcode: pickletools.OpcodeInfo, stack: list[Any]) -> None:
    """Any other opcode: pop what pickletools says it takes (through a mark), push placeholders for what it gives."""
    before = opcode.stack_before
    if pickletools.markobject in before:
        after_mark = before.index(pickletools.markobject)
        _pop_to_mark(stack)
        for _ in range(after_mark):
            _pop(stack)
    else:
        for _ in before:
            _pop(stack)
    stack.extend(_OPAQUE for _ in opcode.stack_after)


def _pop(stack: list[Any]) -> Any:
    if not stack or stack[-1] is _MARK:
        raise ValueError("the pickle pops an empty stack")
    return stack.pop()


def _top(stack: list[Any]) -> Any:
    if not stack:
        raise ValueError("the pickle memoizes an empty stack")
    return stack[-1]


def _pop_to_mark(stack: list[Any]) -> list[Any]:
    items = []
    while stack and stack[-1] is not _MARK:
        items.append(stack.pop())
    if not stack:
        raise ValueError("the pickle has no mark to pop to")
    stack.pop()
    return items[::-1]


def storages(data: bytes, label: str) -> list[tuple[str, str, int]]:
    """Each storage a torch ``data.pkl`` refers to (a key may recur): key, storage type global, element count."""
    try:
        ids = persistent_ids(data)
    except (ValueError, struct.error) as exc:
        raise CheckpointError(
            f"{label}: not a PyTorch checkpoint git-theta can read (its pickle is broken: {str(exc)[:200]})"
        ) from exc
    declared = []
    for pid in ids:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            continue
        _, storage_type, key, _, numel = pid
        if not isinstance(key, str) or type(numel) is not int or not isinstance(storage_type, str):
            raise CheckpointError(f"{label}: not a PyTorch checkpoint git-theta can read (a storage is malformed)")
        declared.append((key, storage_type, numel))
    return declared
