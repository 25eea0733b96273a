"""Frameworks stay optional: handling safetensors files never imports torch, jax or tensorflow."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import io, sys
import numpy as np
from safetensors.numpy import save
from git_theta.filters.clean import clean
from git_theta.session.context import Session
from git_theta.filters.smudge import smudge
from git_theta.storage.objects import MemoryObjectStore

data = save({"w": np.arange(4096, dtype=np.float32)})
context = Session(MemoryObjectStore())
metadata = clean(io.BytesIO(data), "model.safetensors", context)
out = io.BytesIO()
smudge(metadata, "model.safetensors", context)(out)
assert out.getvalue() == data
print(sorted(name for name in ("torch", "jax", "tensorflow") if name in sys.modules))
"""


def test_safetensors_round_trip_imports_no_framework() -> None:
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
