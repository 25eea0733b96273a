"""git config reads and writes, global or per repository."""

from __future__ import annotations

from git_theta.git.command import theta_command
from git_theta.git.runner import run

#: What ``git theta install`` writes (after the command that runs git-theta): a long-running filter, with
#: single-shot commands as a fallback.
FILTER_CONFIG = {
    "filter.theta.process": "{theta} filter-process",
    "filter.theta.clean": "{theta} clean %f",
    "filter.theta.smudge": "{theta} smudge %f",
    "filter.theta.required": "true",
}

#: The diff driver ``git theta install`` writes (docs/diff.md): per-tensor statistics in ``git diff`` (and
#: ``git log -p --ext-diff``) through the external command, one line per tensor in ``git log -p`` and ``git show``
#: through textconv.
DIFF_CONFIG = {
    "diff.theta.command": "{theta} diff-driver",
    "diff.theta.textconv": "{theta} textconv",
}


#: The merge driver ``git theta install`` writes (docs/merges.md): git hands it the metadata of the common ancestor,
#: ours and theirs, and the path; it merges tensor by tensor and writes the result over ours.
MERGE_CONFIG = {
    "merge.theta.name": "git-theta: merge checkpoints tensor by tensor",
    "merge.theta.driver": "{theta} merge-driver %O %A %B %P",
}


def drivers_config() -> dict[str, str]:
    """The filter, diff and merge driver settings, each running this git-theta by its absolute path."""
    theta = theta_command()
    return {
        key: value.replace("{theta}", theta) for key, value in {**FILTER_CONFIG, **DIFF_CONFIG, **MERGE_CONFIG}.items()
    }


def scope_flag(local: bool) -> str:
    """The git config flag for the chosen scope."""
    return "--local" if local else "--global"


def set_values(values: dict[str, str], local: bool) -> None:
    """Write ``values`` into the chosen config scope."""
    for key, value in values.items():
        run("config", scope_flag(local), key, value)


def remove_section(section: str, local: bool) -> bool:
    """Remove a config section; return whether it existed."""
    return run("config", scope_flag(local), "--remove-section", section, check=False).returncode == 0


def get(key: str) -> str | None:
    """Return a config value from any scope, or None."""
    result = run("config", "--get", key, check=False)
    return result.stdout.decode().strip() if result.returncode == 0 else None


def get_all(key: str) -> list[str]:
    """Return every value of a multi-valued config key, from all scopes, in git's order."""
    result = run("config", "--get-all", "-z", key, check=False)
    return [item for item in result.stdout.decode().split("\0") if item] if result.returncode == 0 else []
