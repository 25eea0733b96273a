"""Keeping a repository's tensor objects in order: ``git theta gc`` and ``git theta fsck``."""
