"""Model-aware merges: strategy plugins (entry-point group ``git_theta.plugins.merges``) and the engine that applies
them tensor by tensor to checkpoint metadata (docs/merges.md)."""
