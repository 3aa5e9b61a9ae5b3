"""Images a data set lists but that are not on disk (a partial download of Fitzpatrick 17k):
named in the log, recorded per run, and a class too small for its split refused."""

from __future__ import annotations

import logging

import pandas as pd

from dermsynth.errors import SplitError

log = logging.getLogger(__name__)


def refuse_short_classes(table: pd.DataFrame, missing: dict[str, int], spec) -> None:  # spec: a SplitSpec
    """A class with images missing on disk (a partial download) is named in the log, and refused
    when what is present cannot fill its test and validation quotas plus one training image:
    a study never runs on a silently smaller class."""
    present = table["label"].value_counts()
    where = f" under {spec.root}" if spec.root else ""
    log.warning("images missing on disk%s (the study runs on those present): %s", where,
                ", ".join(f"{c} {int(present.get(c, 0))} present, {n} missing" for c, n in sorted(missing.items())))
    if spec.stratify != "label":
        return
    need = spec.n_test + spec.n_val + 1
    short = {c: int(present.get(c, 0)) for c in missing if 0 < present.get(c, 0) < need}
    if short:
        raise SplitError(
            "class(es) with too few images present for the split (test " f"{spec.n_test} + validation {spec.n_val} "
            "+ 1 training image): " + ", ".join(f"{c!r} has {n} of {n + missing[c]} ({missing[c]} missing{where})"
                                                for c, n in sorted(short.items()))
            + ". Download the missing images (`dermsynth data download`), lower n_test/n_val, or leave the class out")
