"""What a test needs beyond git-theta's own dependencies, said by the test itself.

A test that needs torch or git-lfs calls ``needs_module``/``needs_program``: without it, the test is skipped with
the reason and what to install. scripts/test.sh sets ``GIT_THETA_TEST_STRICT=1``, which turns a missing tool into
a failure, so that CI never passes by skipping.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType

import pytest

STRICT = "GIT_THETA_TEST_STRICT"
TORCH = "pip install torch (scripts/setup.sh installs it)"
GIT_LFS = "apt-get install git-lfs, or see https://git-lfs.com (scripts/setup.sh installs it)"


def needs_module(name: str, install: str) -> ModuleType:
    """Import ``name``, or skip (fail, when strict) the calling test or module, saying to run ``install``."""
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"this test needs the Python package {name!r}: {install}")
        raise


def needs_program(name: str, install: str) -> None:
    """Skip (fail, when strict) the calling test unless the program ``name`` is on PATH."""
    if shutil.which(name) is None:
        _missing(f"this test needs {name}: {install}")


def _missing(message: str) -> None:
    if os.environ.get(STRICT, "") not in ("", "0"):
        pytest.fail(f"{message} ({STRICT} is set)", pytrace=False)
    pytest.skip(message, allow_module_level=True)
