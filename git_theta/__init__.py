"""git-theta: version machine-learning checkpoints in Git, one exact tensor object at a time."""

__version__ = "0.3.0.dev0"
