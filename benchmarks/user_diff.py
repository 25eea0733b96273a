#!/usr/bin/env python3
"""What a user would write instead of ``git theta diff``: load both checkpoints and compute the same statistics.

Loads two safetensors files whole with ``safetensors.numpy.load_file`` and, for every tensor in both with the same
shape whose bytes differ, computes in float64 over whole arrays what ``git theta diff`` reports (docs/diff.md):
elements changed (bit patterns), ||new - old|| over the changed elements, that relative to ||old||, and the cosine.
It is the reference that the ``git theta diff`` row of ``bench_all.py`` is timed against.

Usage: python benchmarks/user_diff.py OLD.safetensors NEW.safetensors [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from safetensors.numpy import load_file


def statistics(old: np.ndarray, new: np.ndarray) -> dict[str, float]:
    """The statistics of one changed tensor, straightforwardly in float64."""
    bits = np.dtype(f"u{old.dtype.itemsize}")
    changed = old.reshape(-1).view(bits) != new.reshape(-1).view(bits)
    o, n = old.reshape(-1).astype(np.float64), new.reshape(-1).astype(np.float64)
    delta = np.where(changed, n - o, 0.0)
    l2, old_norm, new_norm = (float(np.linalg.norm(x)) for x in (delta, o, n))
    return {
        "changed": int(changed.sum()),
        "elements": int(old.size),
        "l2": l2,
        "rel": l2 / old_norm if old_norm else (0.0 if l2 == 0 else float("inf")),
        "cos": float(o @ n) / (old_norm * new_norm) if old_norm and new_norm else float(old_norm == new_norm),
    }


def diff(old_path: str, new_path: str) -> dict[str, dict[str, float]]:
    """Statistics of every tensor that changed between the two files."""
    old, new = load_file(old_path), load_file(new_path)
    return {
        name: statistics(old[name], new[name])
        for name in old
        if name in new and old[name].shape == new[name].shape and old[name].tobytes() != new[name].tobytes()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    args = parser.parse_args()
    result = diff(args.old, args.new)
    if args.json:
        json.dump(result, sys.stdout, indent=1)
    else:
        for name, stats in result.items():
            figures = f"l2 {stats['l2']:.3e}  rel {stats['rel']:.3e}  cos {stats['cos']:.6f}"
            print(f"{name}  changed {stats['changed']}  {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
