"""dermsynth: measure whether, when and how much synthetic images from diffusion models
improve medical image classifiers, with leakage-proof splits and reproducible runs."""

__version__ = "0.1.0"
