"""What changed between two versions of a checkpoint, and by how much (docs/diff.md)."""
