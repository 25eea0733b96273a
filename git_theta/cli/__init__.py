"""The ``git-theta`` command line: one module per command; main.py only parses and dispatches."""
