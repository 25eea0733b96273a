"""Allow ``python -m git_theta``."""

from git_theta.cli.main import main

main()
