"""Experiments: a TOML spec with a grid, stages run in order, resumable results."""
