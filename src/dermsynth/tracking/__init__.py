"""Experiment tracking: a study's runs exported to MLflow.

The run records under ``STUDY/runs`` stay the source of truth; a tracker is a browsable copy of
them, written after the cells finish (and again on every resume), keyed by the run id so a
copy is never duplicated. Nothing here imports MLflow until a study is actually tracked: the
CLI's start-up time does not pay for it.
"""
