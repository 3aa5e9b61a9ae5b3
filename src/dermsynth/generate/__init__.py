"""Synthetic generation: masks and methods, backends (Stable Diffusion, built-in), store."""
