"""Checkpoint formats: each plugin reads a file into tensors, stream by stream, and writes it back."""
