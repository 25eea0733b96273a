"""Shapes as files and metadata declare them: checked before anything is allocated."""

from __future__ import annotations

from git_theta.dtypes import MAX_DIMS, MAX_NBYTES, shape_error


def test_a_shape_is_judged_by_its_exact_size_even_past_the_limit_on_the_way() -> None:
    side = 1 << 30  # each dimension is plausible; their product passes the limit before the 0 makes it empty
    assert shape_error("F32", [side, side, 0]) is None
    assert shape_error("F32", [side, side]) == f"has shape {[side, side]}, larger than any real tensor"
    assert shape_error("U8", [MAX_NBYTES]) is None
    assert "larger than any real tensor" in (shape_error("F32", [MAX_NBYTES]) or "")


def test_a_hostile_shape_is_refused_in_one_line() -> None:
    assert shape_error("F32", [True]) == "has shape [True], which is not a list of non-negative integers"
    assert shape_error("F32", [1 << 47] * 100_000) == f"has 100000 dimensions (at most {MAX_DIMS})"
