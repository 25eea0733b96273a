"""The error of this package: a Git-Theta 0.2 file that cannot be read."""

from __future__ import annotations

from git_theta.errors import GitThetaError


class LegacyError(GitThetaError):
    """Metadata or an object written by Git-Theta 0.2 is missing, corrupt, or of a kind we cannot rebuild."""
