"""Errors of the storage layer."""

from __future__ import annotations

from git_theta.errors import GitThetaError


class ObjectError(GitThetaError):
    """A tensor object is missing, truncated or corrupt."""
