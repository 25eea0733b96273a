"""The interface every checkpoint format plugin implements (entry-point group ``git_theta.plugins.checkpoints``)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any, BinaryIO, ClassVar, NamedTuple, cast

from git_theta.checkpoints.buffers import POOL
from git_theta.errors import GitThetaError

if TYPE_CHECKING:
    import io


class CheckpointError(GitThetaError):
    """A checkpoint is corrupt, truncated, or not in a format git-theta can read."""


class Truncated(CheckpointError):
    """The file ended before a size it declared."""


#: A read of a declared size starts with room for this much, then at most doubles it as the bytes arrive: a file that
#: claims gigabytes in a few bytes costs no more than this.
FIRST_READ = 1 << 20
#: Room is added by copying these zeros: never written, they take no memory (reading them maps the kernel's zero
#: page), where a fresh ``bytes(n)`` per step costs a page fault per page. The bytearray grows by realloc, which for
#: large buffers remaps their pages rather than copying them.
_ZEROS = memoryview(bytes(64 << 20))


class TensorSpec(NamedTuple):
    """What a tensor is, without its bytes."""

    name: str
    dtype: str
    shape: tuple[int, ...]


class Tensor(NamedTuple):
    """A tensor and its exact bytes (C order, little-endian)."""

    spec: TensorSpec
    data: bytes | bytearray | memoryview


class Decoded(NamedTuple):
    """The values an encoded tensor stands for: their dtype, shape and exact bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: memoryview


class Checkpoint(ABC):
    """A checkpoint format: reads a file into tensors and format data, and writes them back."""

    #: The plugin's entry-point name, recorded in metadata as ``checkpoint_type``.
    name: ClassVar[str]
    #: File name extensions (lower case, with the dot) that suggest this format.
    extensions: ClassVar[tuple[str, ...]] = ()
    #: True when ``write`` takes each tensor as an iterable of byte chunks (see ``write_tensor``), read to its end
    #: in order: a checkout then streams, block by block, instead of holding whole tensors.
    accepts_chunks: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def sniff(cls, head: bytes) -> bool:
        """Tell whether a file starting with ``head`` (up to 4 KiB) is in this format."""

    @abstractmethod
    def read(self, stream: BinaryIO, label: str) -> tuple[dict[str, Any], Iterator[Tensor]]:
        """Return the format data needed to rebuild the file, and its tensors in file order.

        ``stream`` is read once, front to back; tensors should be yielded one at a time so that memory tracks the
        largest tensor, not the checkpoint. Raise CheckpointError naming ``label`` for bad input.
        """

    def specs(self, stream: BinaryIO, label: str) -> list[TensorSpec]:
        """The tensors of the file in file order, without their bytes where the format allows (by default, ``read``)."""
        _, tensors = self.read(stream, label)
        return [tensor.spec for tensor in tensors]

    @abstractmethod
    def write(
        self,
        format_data: dict[str, Any],
        specs: list[TensorSpec],
        tensors: Iterable[bytes | bytearray | memoryview],
        out: BinaryIO,
    ) -> None:
        """Write the checkpoint to ``out``; ``tensors`` yields the bytes of ``specs`` in order."""

    @classmethod
    def encodings(cls, format_data: dict[str, Any]) -> dict[str, str]:
        """Tensors whose bytes encode values of another type (GGUF's quantized blocks, stored as ``U8`` rows):
        tensor name -> encoding, which ``decode`` turns into values for diffs. None by default."""
        return {}

    @classmethod
    def decode(cls, encoding: str, data: memoryview, shape: tuple[int, ...]) -> Decoded | None:
        """The values the bytes of an encoded tensor of ``shape`` stand for, or None when they cannot be had here."""
        return None

    @classmethod
    def rebuild_format(
        cls, format_data: dict[str, Any], old_specs: list[TensorSpec], new_specs: list[TensorSpec]
    ) -> tuple[dict[str, Any], list[TensorSpec]]:
        """Adapt ``format_data`` (written for ``old_specs``) to a merge's tensors ``new_specs``.

        Return the new format data and ``new_specs`` in the order the rebuilt file stores them (the order ``read``
        will list them in). A format that cannot add, remove or reshape tensors keeps the default, which refuses.
        """
        if [tuple(spec) for spec in old_specs] == [tuple(spec) for spec in new_specs]:
            return format_data, list(new_specs)
        raise CheckpointError(
            f"the {cls.name} format cannot add, remove or change the dtype or shape of tensors in a merge; "
            "resolve those tensors with the ours or theirs strategy"
        )

    @classmethod
    def matches_extension(cls, path: str) -> bool:
        """Tell whether ``path`` has one of this format's extensions."""
        return os.path.splitext(path)[1].lower() in cls.extensions


def read_exact(stream: IO[bytes], size: int, label: str, what: str, prefix: bytes = b"") -> bytearray:
    """Read exactly ``size`` bytes (``prefix``, already read, then the rest), or raise Truncated.

    ``size`` is what the file declares, so it is believed only as far as bytes arrive: the buffer starts at
    ``FIRST_READ`` and at most doubles once each step is filled, so it never holds more than twice what arrived.
    ``stream`` needs ``readinto``, which every binary stream has, though ``typing.IO`` does not declare it (the casts).
    """
    if size <= FIRST_READ and not prefix:  # the many small fields of a header: one allocation, no growth, no calls
        buffer = bytearray(size)
        view, filled = memoryview(buffer), 0
        while filled < size:
            count = cast("io.BufferedIOBase", stream).readinto(view[filled:])
            if not count:
                raise _truncated(label, what, filled, size)
            filled += count
        return buffer
    spare = None if prefix else POOL.take(size)
    if spare is not None:  # memory already faulted in, by an earlier tensor of this size (checkpoints/buffers.py)
        filled = _fill(stream, spare, 0)
        if filled < size:
            raise _truncated(label, what, filled, size)
        return spare
    buffer = bytearray(prefix)
    while len(buffer) < size:
        filled = len(buffer)
        target = min(size, max(FIRST_READ, 2 * filled), filled + len(_ZEROS))
        buffer += _ZEROS[: target - filled]
        filled = _fill(stream, buffer, filled)
        if filled < target:
            raise _truncated(label, what, filled, size)
    return buffer


def _truncated(label: str, what: str, filled: int, size: int) -> Truncated:
    return Truncated(
        f"{label}: the file is truncated (ended inside {what}, {filled} of {size} bytes); "
        "restore a complete copy before adding it"
    )


def _fill(stream: IO[bytes], buffer: bytearray, filled: int) -> int:
    """Read into ``buffer`` from ``filled`` on until it is full or the stream ends; return how much it holds."""
    with memoryview(buffer) as view:
        while filled < len(buffer):
            count = cast("io.BufferedIOBase", stream).readinto(view[filled:])
            if not count:
                break
            filled += count
    return filled


def write_interleaved(
    out: BinaryIO, separators: list[bytes], tensors: Iterable[bytes | bytearray | memoryview | Iterable[memoryview]]
) -> None:
    """Write ``separators[0]``, the first tensor, ``separators[1]``, ..., then the last separator.

    For formats that keep every byte but the tensors' verbatim: n tensors take n + 1 separators.
    """
    count = 0
    for count, data in enumerate(tensors, 1):
        out.write(separators[count - 1])
        write_tensor(out, data)
    out.write(separators[count])


def write_tensor(out: BinaryIO, data: bytes | bytearray | memoryview | Iterable[memoryview]) -> None:
    """Write a tensor's bytes, given whole or (to plugins that accept chunks) as chunks."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        out.write(data)
        return
    for chunk in data:
        out.write(chunk)
