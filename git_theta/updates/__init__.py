"""Update types: how a tensor is stored relative to a previous value of it (plugins, ``git_theta.plugins.updates``)."""
