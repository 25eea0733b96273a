"""The plugin registry: built-in plugins are declared as entry points, and the fast path agrees with them."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from git_theta import plugins

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_builtin_table_matches_the_entry_points_in_pyproject() -> None:
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"]
    for group, table in plugins.BUILTIN.items():
        assert declared[group] == table


def test_installed_entry_points_include_every_builtin() -> None:
    for group, table in plugins.BUILTIN.items():
        installed = plugins.entry_points(group)
        assert {name: ep.value for name, ep in installed.items() if name in table} == table


def test_unknown_plugin_lists_the_available_ones() -> None:
    with pytest.raises(
        plugins.PluginError,
        match=r"unknown checkpoints plugin 'nope' \(available: flax, gguf, npz, safetensors, torch\)",
    ):
        plugins.load(plugins.CHECKPOINTS, "nope")


def test_every_builtin_loads_and_declares_its_name() -> None:
    for group, table in plugins.BUILTIN.items():
        for name in table:
            assert plugins.load(group, name).name == name
