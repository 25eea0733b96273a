"""The plot of a comparison, checked as a figure: labels that never overlap, the bars it keeps, its title and scale."""

from __future__ import annotations

import itertools

import pytest

from git_theta.diffs.numeric import Change
from git_theta.diffs.plot import LABEL_CHARS, MAX_BARS, bars, draw
from git_theta.diffs.result import MODIFIED, CheckpointDiff, Layout, TensorDiff

pytest.importorskip("matplotlib")

TITLE = "model.safetensors.index.json, 2 shards: HEAD~1 (1234567) -> HEAD (89abcde)"


def changed(name: str, rel: float) -> TensorDiff:
    change = Change(changed=1, elements=4, l2=rel, rel=rel, cos=1.0, old_norm=1.0, new_norm=1.0)
    return TensorDiff(name, MODIFIED, Layout("F32", (4,)), Layout("F32", (4,)), change)


def model(count: int, prefix: str = "model.decoder.layers") -> CheckpointDiff:
    tensors = [
        changed(f"{prefix}.{i // 4}.self_attention.projection_{i % 4}.weight", 10.0 ** -(i % 7)) for i in range(count)
    ]
    return CheckpointDiff("model.safetensors.index.json", tensors=tensors)


def labels_do_not_overlap(figure) -> None:
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    (axes,) = figure.axes
    low, high = sorted(axes.get_xlim())
    drawn = [label for label, at in zip(axes.get_xticklabels(), axes.get_xticks(), strict=True) if low <= at <= high]
    texts = [*axes.get_yticklabels(), *drawn, axes.title, axes.xaxis.label]
    boxes = [text.get_window_extent(renderer) for text in texts if text.get_text()]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    for box in boxes:  # nothing cut off at the edges of the figure
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= figure.bbox.x1 and box.y1 <= figure.bbox.y1


@pytest.mark.parametrize("count", [3, 60, 250])
def test_tensor_labels_never_overlap_and_at_most_max_bars_are_drawn(count: int) -> None:
    import matplotlib.pyplot as plt

    diff = model(count)
    figure = draw([diff], [diff.tensors], TITLE, "tensor")
    (axes,) = figure.axes
    shown = [label.get_text() for label in axes.get_yticklabels()]
    assert len(shown) == min(count, MAX_BARS) and all(len(label) <= LABEL_CHARS for label in shown)
    if count > MAX_BARS:  # the largest are kept, and the axis says how many were left out
        assert f"the {MAX_BARS} largest of {count}" in axes.get_xlabel()
        assert min(patch.get_width() for patch in axes.patches) == pytest.approx(1e-2)  # 36 each of 1, 0.1 and 0.01
    labels_do_not_overlap(figure)
    assert axes.get_title() == TITLE and axes.get_xscale() == "log"
    plt.close(figure)


def test_linear_scale_and_layers_across_shards() -> None:
    import matplotlib.pyplot as plt

    diff = model(16)  # layers 0 to 3; each layer's largest relative change is 1
    figure = draw([diff], [diff.tensors], TITLE, "layer", scale="linear")
    (axes,) = figure.axes
    assert [label.get_text() for label in axes.get_yticklabels()] == [f"model.decoder.layers.{i}" for i in range(4)]
    assert axes.get_xscale() == "linear" and "per layer" in axes.get_xlabel()
    labels_do_not_overlap(figure)
    plt.close(figure)


def test_bars_of_one_model_have_no_path_and_of_several_have_theirs() -> None:
    one, two = model(2), model(2, prefix="other")
    assert [label for label, _ in bars([one], [one.tensors], "layer")] == ["model.decoder.layers.0"]
    two.path = "b.safetensors"
    labels = [label for label, _ in bars([one, two], [one.tensors, two.tensors], "layer")]
    assert labels == ["model.safetensors.index.json: model.decoder.layers.0", "b.safetensors: other.0"]
