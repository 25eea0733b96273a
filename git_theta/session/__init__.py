"""The state of one git command (``Session``): object store, threads, settings, and what the repository holds."""
