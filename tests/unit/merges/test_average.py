"""``uniform-soup`` is ``average`` under the name of the model-soups paper."""

from __future__ import annotations

import numpy as np

from git_theta.merges.base import load_strategy


def test_uniform_soup_is_the_mean() -> None:
    models = [np.arange(6.0) * k for k in (1, 2, 6)]
    got = load_strategy("uniform-soup").merge(None, models, [1.0, 1.0, 1.0], "w")
    assert np.array_equal(got, load_strategy("average").merge(None, models, [1.0, 1.0, 1.0], "w"))
    np.testing.assert_allclose(got, np.arange(6.0) * 3)
    assert load_strategy("uniform-soup").describe() == "uniform-soup"
