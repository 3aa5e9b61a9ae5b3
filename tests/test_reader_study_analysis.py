"""Reader-study analysis (issue 22, items 5–7): tests that count readers and items as samples,
signal detection per method, and Fleiss' kappa undefined when it is. Simulated answers only
(no study folder needed), vectorised: thousands of simulated studies in a second."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dermsynth.reader_study.analysis import agreement, by_method, pooled
from dermsynth.reader_study.mrmc import crossed_mean_test

SIMS, READERS, ITEMS = 6000, 10, 40


def _simulate(rng, mean: float, sd_reader: float, sd_item: float, missing: float = 0.0) -> np.ndarray:
    """Correct (1) / wrong (0) answers of SIMS studies, readers × items, with reader and item
    effects on the probability scale (symmetric, so the population mean stays ``mean``)."""
    p = np.clip(mean + rng.normal(0, sd_reader, (SIMS, READERS, 1)) + rng.normal(0, sd_item, (SIMS, 1, ITEMS)), 0, 1)
    y = (rng.random((SIMS, READERS, ITEMS)) < p).astype(float)
    if missing:
        y[rng.random(y.shape) < missing] = np.nan  # readers who skipped or stopped early
    return y


def _pooled_binomial_p(y: np.ndarray) -> np.ndarray:
    """The old analysis: every answer an independent trial, exact binomial test against 50 %."""
    k, n = np.nansum(y, (1, 2)), (~np.isnan(y)).sum((1, 2))
    return np.minimum(1, 2 * np.minimum(stats.binom.cdf(k, n, 0.5), stats.binom.sf(k - 1, n, 0.5)))


@pytest.mark.parametrize(("sd_reader", "sd_item", "missing"), [(0.0, 0.2, 0.0), (0.1, 0.2, 0.0), (0.1, 0.2, 0.2)])
def test_null_rejection_rate_with_reader_and_item_effects(sd_reader, sd_item, missing):
    """Item 5: with 10 readers × 40 items and item difficulty sd 0.2, a true 50 % is rejected in
    at most 5 % of studies (+ 2 Monte-Carlo standard errors), where the pooled binomial test of
    the old analysis rejects far more often; and the test still finds a real effect."""
    rng = np.random.default_rng(22)
    y = _simulate(rng, 0.5, sd_reader, sd_item, missing)
    rate = float((crossed_mean_test(y)["p_value"] < 0.05).mean())
    old = float((_pooled_binomial_p(y) < 0.05).mean())
    print(f"null, sd_reader {sd_reader}, sd_item {sd_item}, missing {missing}: crossed {rate:.3f}, pooled {old:.3f}")
    assert rate <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / SIMS)
    assert old > 0.12  # the simulation does show the old test's problem
    power = float((crossed_mean_test(_simulate(rng, 0.65, sd_reader, sd_item, missing))["p_value"] < 0.05).mean())
    assert power > 0.5


def test_crossed_test_on_one_matrix_is_the_two_way_anova():
    """On a complete matrix the variance is (MS_R + MS_I − MS_E) / N (two-way random effects)."""
    rng = np.random.default_rng(1)
    y = (rng.random((6, 15)) < np.clip(0.6 + rng.normal(0, 0.2, (1, 15)) + rng.normal(0, .1, (6, 1)), 0, 1)) * 1.0
    r, i = y.shape
    grand, rm, im = y.mean(), y.mean(1, keepdims=True), y.mean(0, keepdims=True)
    ms_r = i * ((rm - grand) ** 2).sum() / (r - 1)
    ms_i = r * ((im - grand) ** 2).sum() / (i - 1)
    ms_e = ((y - rm - im + grand) ** 2).sum() / ((r - 1) * (i - 1))
    res = crossed_mean_test(y)
    assert res["mean"] == pytest.approx(grand)
    assert res["se"] ** 2 == pytest.approx((ms_r + ms_i - ms_e) / (r * i))


def _answers(readers: dict[str, callable], n_real: int = 20, n_per_method: int = 10, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    items = [("real", "real", f"r{k}") for k in range(n_real)]
    items += [("synthetic", m, f"{m}{k}") for m in ("inpaint", "text-to-image") for k in range(n_per_method)]
    rows = []
    for name, choose in readers.items():
        for truth, method, item in items:
            answer, confidence = choose(truth, method, rng)
            rows.append({"reader": name, "item_id": item, "truth": truth, "method": method, "answer": answer,
                         "confidence": confidence, "label": "x", "skin_group": None})
    frame = pd.DataFrame(rows)
    return frame.assign(correct=frame["answer"] == frame["truth"])


def test_response_bias_is_not_read_as_fooled():
    """Item 6: two readers who answer "real" every time: per method d′ = 0, a large criterion,
    AUC 0.5 and no significant result — not "inpaint: 0 % correct, p = 9e-9"; "real" is no method."""
    single = _answers({"a": lambda *_: ("real", 3), "b": lambda *_: ("real", 4)})
    methods = by_method(single).set_index("method")
    assert sorted(methods.index) == ["inpaint", "text-to-image"]
    assert (methods["sensitivity"] == 0).all() and (methods["specificity"] == 1).all()
    # d′ ≈ 0 (not exactly: the log-linear correction of 0/10 and 0/20 differs a little)
    assert np.allclose(methods["d_prime"], 0, atol=0.35) and (methods["criterion"] > 1.5).all()
    assert np.allclose(methods["auc"], 0.5) and not (methods["auc_p_bh"] < 0.05).any()
    res = pooled(single)
    assert res["accuracy"] == 0.5 and abs(res["d_prime"]) < 0.2


def test_a_method_readers_can_spot_stands_out():
    """Item 6: readers who spot text-to-image images but not inpainted ones: high d′ and a
    significant AUC for text-to-image only."""
    def reader(truth, method, rng):
        if method == "text-to-image":
            return "synthetic", int(rng.integers(4, 6))
        return ("synthetic" if rng.random() < 0.3 else "real"), int(rng.integers(1, 4))
    single = _answers({f"r{i}": reader for i in range(6)}, seed=3)
    methods = by_method(single).set_index("method")
    assert methods.loc["text-to-image", "d_prime"] > 1.5 and methods.loc["text-to-image", "auc_p_bh"] < 0.01
    assert abs(methods.loc["inpaint", "d_prime"]) < 0.6 and methods.loc["inpaint", "auc_p_bh"] > 0.05


def test_fleiss_kappa_is_undefined_when_every_answer_is_the_same():
    """Item 7: identical answers give no kappa (None, with the reason), not 1.0."""
    same = pd.DataFrame({"reader": ["a"] * 4 + ["b"] * 4, "item_id": list("wxyz") * 2, "answer": ["real"] * 8})
    res = agreement(same)
    assert res["fleiss_kappa"] is None and "same" in res["note"]
    mixed = same.assign(answer=["real", "synthetic"] * 4)
    assert agreement(mixed)["fleiss_kappa"] == pytest.approx(1.0)
