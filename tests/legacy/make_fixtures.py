"""Build repositories with the real Git-Theta 0.2.0, for the tests of reading them (tests/e2e/test_legacy.py).

The old tool runs from its own virtual environment (``tests/legacy/make_legacy_venv.sh`` makes one); this script,
run by a Python with numpy, torch and safetensors (the test environment), drives it through git like a user would,
under a throw-away HOME. For each repository it then checks out every commit with the old tool and records the
tensors that checkout gave: what our tool must give too.

    GIT_THETA_LEGACY_VENV=/path/to/venv python -m tests.legacy.make_fixtures [--out tests/legacy/fixtures]

Written per repository NAME under ``--out``: ``NAME.bundle`` (``git bundle --all``), ``NAME-lfs/objects/...``
(the old tool's LFS objects) and, for all of them, ``expected.json``. The live test calls ``build`` directly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
VENV_ENV = "GIT_THETA_LEGACY_VENV"
#: Fixed dates make the commits, and so the old tool's ``last_commit`` fields, the same on every run.
EPOCH = 1_700_000_000


def legacy_venv() -> Path | None:
    """The virtual environment holding git-theta 0.2.0, named by $GIT_THETA_LEGACY_VENV, if it is usable."""
    value = os.environ.get(VENV_ENV)
    if not value:
        return None
    venv = Path(value)
    return venv if (venv / "bin" / "git-theta-filter").exists() else None


class Legacy:
    """Runs git with the old tool on PATH, its global config in a private HOME."""

    def __init__(self, venv: Path, scratch: Path) -> None:
        home = scratch / "legacy-home"
        home.mkdir(parents=True, exist_ok=True)
        path = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
        keep = {key: value for key, value in os.environ.items() if not key.startswith(("GIT_", "VIRTUAL_ENV"))}
        self.env = {**keep, "PATH": path, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
        # The old tool logs to $TMPDIR/git-theta.log: keep that out of the real temporary directory.
        self.env |= {"GIT_CONFIG_NOSYSTEM": "1", "TMPDIR": str(scratch), "GIT_TERMINAL_PROMPT": "0"}
        self.commits = 0
        for key, value in {
            "user.name": "Legacy",
            "user.email": "legacy@example.com",
            "init.defaultBranch": "main",
        }.items():
            self.git(home, "config", "--global", key, value)
        self.git(home, "lfs", "install", "--skip-repo")
        self.git(home, "theta", "install")

    def git(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
        """Run git; fail with both streams when it fails."""
        result = subprocess.run(["git", *args], cwd=cwd, env={**self.env, **(env or {})}, capture_output=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"git {' '.join(args)} exited {result.returncode}\n{result.stdout.decode(errors='replace')}\n"
                f"{result.stderr.decode(errors='replace')[-4000:]}"
            )
        return result.stdout.decode()

    def commit(self, repo: Path, message: str, env: dict[str, str] | None = None) -> str:
        """Commit what is staged at the next fixed date; return the commit id."""
        self.commits += 1
        date = f"{EPOCH + 60 * self.commits} +0000"
        self.git(
            repo,
            "commit",
            "-q",
            "-m",
            message,
            env={**(env or {}), "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date},
        )
        return self.git(repo, "rev-parse", "HEAD").strip()


def tensor_record(array: np.ndarray) -> dict[str, object]:
    """What the tests compare: dtype, shape and the SHA-256 of the exact little-endian bytes."""
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return {"dtype": str(array.dtype), "shape": list(array.shape), "sha256": hashlib.sha256(data).hexdigest()}


def load_torch(path: Path) -> dict[str, np.ndarray]:
    """Read a state dict written by the old tool (weights only: never unpickle anything else)."""
    import torch

    return {name: tensor.numpy() for name, tensor in torch.load(path, weights_only=True).items()}


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Read a safetensors file with the safetensors library."""
    from safetensors.numpy import load_file

    return load_file(str(path))


def save_torch(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write a state dict of tensors, as a PyTorch user would."""
    import torch

    torch.save({name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in tensors.items()}, path)


def save_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write a safetensors file with the safetensors library."""
    from safetensors.numpy import save_file

    save_file(tensors, str(path))


def build_torch(legacy: Legacy, repo: Path, side: Path, full: bool = True) -> list[str]:
    """A PyTorch checkpoint over dense commits and, with ``full``, low-rank, sparse and ia3 updates."""
    rng = np.random.default_rng(7)
    model = {
        "w1": rng.standard_normal((8, 6), dtype=np.float32),
        "b1": rng.standard_normal(6, dtype=np.float32),
        "w2": rng.standard_normal((6, 4), dtype=np.float32),
        "steps": np.arange(3, dtype=np.int64),
        "scale": rng.standard_normal(5).astype(np.float64),
    }
    legacy.git(repo, "init", "-q")
    legacy.git(repo, "theta", "track", "model.pt")
    save_torch(repo / "model.pt", model)
    legacy.git(repo, "theta", "add", "model.pt")
    commits = [legacy.commit(repo, "dense: base model")]

    model["w1"] = model["w1"] * np.float32(1.5)
    model["scale"] = model["scale"] + 0.25
    save_torch(repo / "model.pt", model)
    legacy.git(repo, "add", "model.pt")
    commits.append(legacy.commit(repo, "dense: w1 and scale changed"))
    if not full:
        return commits

    # Side-loaded low-rank update w1 += R @ C. Dyadic values keep R @ C exact, whatever the BLAS.
    r = (np.arange(16, dtype=np.float32).reshape(8, 2) - 8) / 8
    c = (np.arange(12, dtype=np.float32).reshape(2, 6) - 6) / 4
    save_torch(side / "low-rank.pt", {"w1/R": r, "w1/C": c})
    legacy.git(
        repo, "theta", "add", "model.pt", "--update-type", "low-rank", "--update-data", str(side / "low-rank.pt")
    )
    commits.append(legacy.commit(repo, "low-rank: w1 += R @ C"))

    # A side-loaded update leaves the file as it was: check it out again (with the old tool) before the next change.
    (repo / "model.pt").unlink()
    legacy.git(repo, "checkout", "--", "model.pt")
    model = load_torch(repo / "model.pt")
    model["w2"] = model["w2"].copy()
    model["w2"][1, 2] += np.float32(0.5)
    model["w2"][4, 0] -= np.float32(2.0)
    save_torch(repo / "model.pt", model)
    save_torch(side / "nothing.pt", {})  # the update is computed from the file: no side-loaded data
    legacy.git(repo, "theta", "add", "model.pt", "--update-type", "sparse", "--update-data", str(side / "nothing.pt"))
    commits.append(legacy.commit(repo, "sparse: two elements of w2"))

    ia3 = np.array([[2.0, 0.5, 1.0, -1.0]], dtype=np.float32)
    save_torch(side / "ia3.pt", {"w2/ia3": ia3})
    legacy.git(repo, "theta", "add", "model.pt", "--update-type", "ia3", "--update-data", str(side / "ia3.pt"))
    commits.append(legacy.commit(repo, "ia3: w2 columns scaled"))
    return commits


def build_safetensors(legacy: Legacy, repo: Path, side: Path, full: bool = True) -> list[str]:
    """A safetensors checkpoint over two dense commits (the old tool reads the format from an env var)."""
    rng = np.random.default_rng(11)
    model = {
        "encoder.layer.0.weight": rng.standard_normal((4, 4), dtype=np.float32),
        "encoder.layer.0.bias": rng.standard_normal(4, dtype=np.float32),
        "positions": np.arange(5, dtype=np.int32),
        "gain": rng.standard_normal(2).astype(np.float64),
    }
    legacy.git(repo, "init", "-q")
    legacy.git(repo, "theta", "track", "model.safetensors")
    save_safetensors(repo / "model.safetensors", model)
    legacy.git(repo, "add", "model.safetensors")
    commits = [legacy.commit(repo, "dense: base model")]
    model["encoder.layer.0.bias"] = model["encoder.layer.0.bias"] - np.float32(1.0)
    save_safetensors(repo / "model.safetensors", model)
    legacy.git(repo, "add", "model.safetensors")
    commits.append(legacy.commit(repo, "dense: bias changed"))
    return commits


#: name -> (file, extra environment of the old tool, builder, reader of what its checkout wrote)
REPOSITORIES: dict[str, tuple[str, dict[str, str], Callable[..., list[str]], Callable[[Path], dict]]] = {
    "torch": ("model.pt", {}, build_torch, load_torch),
    "safetensors": (
        "model.safetensors",
        {"GIT_THETA_CHECKPOINT_TYPE": "safetensors"},
        build_safetensors,
        load_safetensors,
    ),
}


def build(venv: Path, scratch: Path, full: bool = True) -> dict[str, dict]:
    """Build every repository under ``scratch`` with the old tool; return what its checkouts gave, per repository."""
    legacy = Legacy(venv, scratch)
    expected = {}
    for name, (file, extra, builder, reader) in REPOSITORIES.items():
        repo, side = scratch / name, scratch / f"{name}-side"
        repo.mkdir()
        side.mkdir()
        legacy.env |= extra
        commits = builder(legacy, repo, side, full)
        records = []
        for commit in commits:
            legacy.git(repo, "checkout", "-q", commit)
            (repo / file).unlink()
            legacy.git(repo, "checkout", "--", file)
            tensors = reader(repo / file)
            message = legacy.git(repo, "log", "-1", "--format=%s", commit).strip()
            records.append(
                {
                    "commit": commit,
                    "message": message,
                    "file_sha256": hashlib.sha256((repo / file).read_bytes()).hexdigest(),
                    "tensors": {key: tensor_record(value) for key, value in tensors.items()},
                }
            )
        legacy.git(repo, "checkout", "-q", "main")
        for key in extra:
            legacy.env.pop(key)
        expected[name] = {"file": file, "commits": records}
    return expected


def export(scratch: Path, expected: dict[str, dict], out: Path) -> None:
    """Write the bundles, LFS objects and expected tensors of the repositories built under ``scratch``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in expected:
        subprocess.run(
            ["git", "bundle", "create", "-q", str(out / f"{name}.bundle"), "--all"], cwd=scratch / name, check=True
        )
        objects = out / f"{name}-lfs" / "objects"
        shutil.rmtree(objects.parent, ignore_errors=True)
        shutil.copytree(scratch / name / ".git" / "lfs" / "objects", objects)
    (out / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


def main() -> int:
    """Build the fixture repositories and write them to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "fixtures")
    args = parser.parse_args()
    venv = legacy_venv()
    if venv is None:
        print(f"set {VENV_ENV} to a virtual environment with git-theta==0.2.0 (tests/legacy/make_legacy_venv.sh)")
        return 2
    with tempfile.TemporaryDirectory(prefix="legacy-fixtures-") as directory:
        scratch = Path(directory)
        expected = build(venv, scratch)
        export(scratch, expected, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
