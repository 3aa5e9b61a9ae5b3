"""Datasets, cleaning, splits and the decoded-image cache."""
