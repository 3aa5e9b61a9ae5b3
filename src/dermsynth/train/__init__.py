"""Classifier training: backbones, transforms, mixing real and synthetic, the loop."""
