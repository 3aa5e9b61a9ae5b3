"""Deployment: a study's model leaves the study — exported bundles (ONNX, TorchScript) with
their model card. Kept apart from analysis, which only reads results."""
