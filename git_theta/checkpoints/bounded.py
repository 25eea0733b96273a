"""Reading sizes that a file declares without trusting them (kept for plugins: ``base.read_exact`` does this now)."""

from __future__ import annotations

from git_theta.checkpoints.base import Truncated, read_exact

#: Allocates only as the bytes arrive (see ``read_exact``), so a file that lies about a size fails at its end.
read_bounded = read_exact

__all__ = ["Truncated", "read_bounded"]
