"""``import git_theta`` stays cheap (the filter imports it on every git command); the API comes on first use."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import sys
import git_theta
before = {name for name in sys.modules if name.split(".")[0] in ("numpy", "git_theta", "torch", "click")}
api = git_theta.open_checkpoint, git_theta.diff, git_theta.StoredCheckpoint
print(sorted(before), "git_theta.api" in sys.modules, "torch" in sys.modules)
"""


def test_import_loads_neither_numpy_nor_the_api_until_asked() -> None:
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['git_theta'] True False"


def test_unknown_names_are_attribute_errors() -> None:
    import git_theta

    assert git_theta.__version__
    try:
        git_theta.open_checkpiont  # noqa: B018 - a typo must not import anything or pass silently
    except AttributeError as exc:
        assert "open_checkpiont" in str(exc)
    else:
        raise AssertionError("no AttributeError")
