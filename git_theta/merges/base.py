"""The interface every merge strategy implements, and how a strategy is named on the command line.

A strategy is written ``NAME`` or ``NAME:OPTION=VALUE,OPTION=VALUE`` (``ties:density=0.2,lambda=1``). Every strategy
also takes ``weights=W1/W2/...``: one weight per model, ours first (default: 1 each), and ``allow-overflow=true``: keep
a result with inf or nan values that no version had (by default such a merge is refused).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from git_theta.errors import GitThetaError

if TYPE_CHECKING:
    import numpy as np

    from git_theta.metadata import TensorEntry

#: Elements per chunk of a streamed merge: float64 copies of a few MB, whatever the tensor's size.
CHUNK = 1 << 18
#: The elementwise last step of a merge: (the ancestor's chunk or None, the models' chunks) -> the merged chunk.
Step = Callable[["np.ndarray | None", "list[np.ndarray]"], "np.ndarray"]

#: The option every strategy takes that keeps a merged tensor that overflowed its dtype (inf or nan).
ALLOW_OVERFLOW = "allow-overflow"
#: dtypes that the averaging strategies compute with; everything else can only be taken from one side.
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0"})


class MergeError(GitThetaError):
    """A merge cannot be done as asked: a bad strategy, or checkpoints that cannot be combined."""


class Conflict(NamedTuple):
    """A tensor that several sides changed in different ways."""

    name: str
    base: TensorEntry | None
    sides: tuple[TensorEntry | None, ...]


class MergeContext(NamedTuple):
    """What a strategy may know of the merge beyond one tensor's versions."""

    #: A pick (cherry-pick, revert, rebase): the sides are ours and the picked commit, whose change is transferred.
    transfer: bool = False
    #: How many numbered blocks the checkpoint's tensor names count (for LiNeS), None when there are none.
    layers: int | None = None


#: The context of a merge that is neither a pick nor split in numbered blocks.
PLAIN = MergeContext()


class Versions(Protocol):
    """The versions of one tensor, flattened (C order), read in chunks of CHUNK elements as ``dtype``."""

    #: Elements in the tensor, and the number of models (ours first).
    size: int
    models: int
    #: The float type the strategy computes in.
    dtype: np.dtype
    #: The merge this tensor is part of.
    context: MergeContext

    def chunks(self, models: Sequence[int], base: bool) -> Iterator[tuple[np.ndarray | None, list[np.ndarray]]]:
        """Yield ``(ancestor or None, [the chunk of each model in models])``, chunk after chunk, in order."""
        ...


class MergeStrategy(ABC):
    """A way to combine the versions of one tensor; pure numpy, no git."""

    #: The plugin's entry-point name, typed by users.
    name: ClassVar[str]
    #: One line for menus and help.
    summary: ClassVar[str] = ""
    #: Option names and defaults; values given by users are converted to the default's type.
    defaults: ClassVar[dict[str, Any]] = {}
    #: True when the formula needs the common ancestor's value.
    needs_base: ClassVar[bool] = False
    #: True when each output element depends only on the same element of the inputs: the engine then works a chunk
    #: at a time in float64, so memory stays near the size of the tensors themselves.
    elementwise: ClassVar[bool] = False
    #: The number of models the formula accepts (None: any).
    models: ClassVar[int | None] = None
    #: Options outside ``defaults`` that a family of strategies shares (parsed by ``extra_option``).
    extra_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: dict[str, str] | None = None) -> None:
        self.options = dict(self.defaults)
        self.given: set[str] = set()
        self.weights: list[float] | None = None
        self.allow_overflow = False
        for key, text in (options or {}).items():
            if key == "weights":
                self.weights = _floats(self.name, text)
                continue
            if key == ALLOW_OVERFLOW:
                self.allow_overflow = _convert(self.name, key, text, False)
                continue
            if key in self.extra_options:
                self.extra_option(key, text)
                continue
            if key not in self.defaults:
                known = ", ".join([*self.defaults, *self.extra_options, "weights", ALLOW_OVERFLOW])
                raise MergeError(f"merge strategy {self.name!r} has no option {key!r} (options: {known})")
            self.options[key] = _convert(self.name, key, text, self.defaults[key])
            self.given.add(key)
        self.check()

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise MergeError when the options are out of range."""

    def extra_option(self, key: str, text: str) -> None:  # noqa: B027 - optional hook
        """Take one of ``extra_options``, raising MergeError when its value is invalid."""

    def extra_described(self) -> list[str]:
        """The ``extra_options`` given, as ``KEY=VALUE``."""
        return []

    def rescales_lone_change(self, transfer: bool) -> bool:
        """Tell whether a tensor that only one side changed must be merged too, since the formula does not give
        that change back (a LiNeS scale; in a pick, a lambda): otherwise the engine takes that side whole."""
        return False

    def describe(self) -> str:
        """The strategy as a user would type it, with every option."""
        options = [f"{key}={value}" for key, value in self.options.items()]
        options.extend(self.extra_described())
        if self.weights is not None:
            options.append("weights=" + "/".join(f"{w:g}" for w in self.weights))
        if self.allow_overflow:
            options.append(f"{ALLOW_OVERFLOW}=true")
        return self.name + (":" + ",".join(options) if options else "")

    def unsuitable(self, conflict: Conflict) -> str | None:
        """Say why this strategy cannot merge ``conflict``, or return None when it can."""
        present = [entry for entry in conflict.sides if entry is not None]
        if len(present) < len(conflict.sides):
            return "it was deleted on one side and changed on another"
        if len({(entry.dtype, entry.shape) for entry in present}) > 1:
            return "its dtype or shape differs between the sides"
        if present[0].dtype not in FLOAT_DTYPES:
            return f"its dtype {present[0].dtype} is not floating point"
        if self.models is not None and len(present) != self.models:
            return f"{self.name} merges exactly {self.models} models, not {len(present)}"
        if self.needs_base:
            base = conflict.base
            if base is None:
                return "it has no common ancestor (added on both sides)"
            if (base.dtype, base.shape) != (present[0].dtype, present[0].shape):
                return "its dtype or shape changed since the common ancestor"
        return None

    @abstractmethod
    def merge(self, base: np.ndarray | None, models: list[np.ndarray], weights: list[float], tensor: str) -> np.ndarray:
        """Return the merged values (float arrays of one shape in, one out; ``base`` only when ``needs_base``)."""

    def prepare(self, versions: Versions, weights: list[float], tensor: str) -> Step | None:
        """Make the passes over the whole tensor the formula needs (a threshold, a norm) and return its elementwise
        last step, which the engine runs chunk after chunk; None: the engine loads the whole tensors for ``merge``.

        Streaming keeps a merge's memory near one tensor whatever the number of versions (docs/merges.md).
        """
        if self.elementwise:
            return lambda base, models: self.merge(base, models, weights, tensor)
        return None


class SelectStrategy(MergeStrategy):
    """A strategy that takes one version whole: it applies to any tensor, of any dtype, even a deleted one."""

    def unsuitable(self, conflict: Conflict) -> str | None:
        return None

    @abstractmethod
    def pick(self, count: int) -> int | None:
        """Return the index of the side to take among ``count``, or None for the common ancestor."""

    def merge(self, base: np.ndarray | None, models: list[np.ndarray], weights: list[float], tensor: str) -> np.ndarray:
        index = self.pick(len(models))
        chosen = base if index is None else models[index]
        if chosen is None:
            raise MergeError(f"{self.name}: tensor {tensor!r} has no common ancestor")
        return chosen


class ArrayVersions:
    """Versions already in memory, read in the same chunks as the engine's (``merge`` of a streaming strategy)."""

    def __init__(self, base: np.ndarray | None, models: list[np.ndarray], context: MergeContext = PLAIN) -> None:
        import numpy as np

        self.base = None if base is None else base.reshape(-1)
        self.flat = [model.reshape(-1) for model in models]
        self.size, self.models = self.flat[0].size, len(models)
        self.dtype = np.result_type(*self.flat, *([] if self.base is None else [self.base]))
        self.context = context

    def chunks(self, models: Sequence[int], base: bool) -> Iterator[tuple[np.ndarray | None, list[np.ndarray]]]:
        for start in range(0, self.size, CHUNK):
            part = slice(start, start + CHUNK)
            chunk_base = self.base[part] if base and self.base is not None else None
            yield chunk_base, [self.flat[index][part] for index in models]


def merge_in_memory(
    strategy: MergeStrategy,
    base: np.ndarray | None,
    models: list[np.ndarray],
    weights: list[float],
    tensor: str,
    context: MergeContext = PLAIN,
) -> np.ndarray:
    """``merge`` for a strategy that implements ``prepare``: the same passes and steps, on arrays in memory."""
    import numpy as np

    versions = ArrayVersions(base, models, context)
    step = strategy.prepare(versions, weights, tensor)
    assert step is not None
    parts = [step(b, ms) for b, ms in versions.chunks(range(len(models)), base is not None)]
    return (np.concatenate(parts) if parts else np.zeros(0, versions.dtype)).reshape(models[0].shape)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``NAME:KEY=VALUE,...`` into the name and its options."""
    name, _, rest = spec.strip().partition(":")
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MergeError(f"merge strategy {spec!r}: options are written KEY=VALUE, separated by commas")
        options[key.strip()] = value.strip()
    if not name:
        raise MergeError(f"empty merge strategy in {spec!r}")
    return name.strip(), options


def load_strategy(spec: str) -> MergeStrategy:
    """Return the strategy ``spec`` names, configured with its options."""
    from git_theta import plugins

    name, options = parse_spec(spec)
    return plugins.load(plugins.MERGES, name)(options)


def _convert(strategy: str, key: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        return type(default)(text)
    except ValueError:
        kind = type(default).__name__
        raise MergeError(f"merge strategy {strategy!r}: option {key}={text!r} is not a valid {kind}") from None


def _floats(strategy: str, text: str) -> list[float]:
    try:
        weights = [float(part) for part in text.split("/")]
    except ValueError:
        raise MergeError(f"merge strategy {strategy!r}: weights={text!r} must be numbers separated by '/'") from None
    if any(w < 0 for w in weights) or not sum(weights) > 0:
        raise MergeError(f"merge strategy {strategy!r}: weights must be non-negative and not all zero")
    return weights
