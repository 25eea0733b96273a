"""An example git-theta checkpoint plugin: the ``.gtx`` format (a text header, then raw tensor bytes)."""

from git_theta_example_format.gtx import GtxCheckpoint, load, save

__all__ = ["GtxCheckpoint", "load", "save"]
