"""The plugin registry: built-in plugins are declared once, as entry points, and the fast path reads them."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from git_theta import plugins

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


GROUPS = (plugins.CHECKPOINTS, plugins.UPDATES, plugins.MERGES)


def test_the_fast_path_reads_the_entry_points_declared_in_pyproject() -> None:
    """If this fails after editing pyproject.toml, reinstall: pip install -e . (scripts/setup.sh does it)."""
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"]
    for group in GROUPS:
        assert plugins.own_entry_points()[group] == declared[group]


def test_the_fast_path_agrees_with_importlib_metadata() -> None:
    for group in GROUPS:
        installed = {name: ep.value for name, ep in plugins.entry_points(group).items()}
        own = plugins.own_entry_points()[group]
        assert {name: installed.get(name) for name in own} == own


def test_unknown_plugin_lists_the_available_ones() -> None:
    with pytest.raises(
        plugins.PluginError,
        match=r"unknown checkpoints plugin 'nope' \(available: flax, gguf, npz, safetensors, torch\)",
    ):
        plugins.load(plugins.CHECKPOINTS, "nope")


def test_every_builtin_loads_and_declares_its_name() -> None:
    for group in GROUPS:
        for name in plugins.own_entry_points()[group]:
            assert plugins.load(group, name).name == name
