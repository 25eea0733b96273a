"""Every call to git and git-lfs goes through this package."""
