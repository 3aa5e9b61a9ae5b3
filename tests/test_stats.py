"""Statistics against statsmodels/scipy and the paper's own figures (SPEC §6)."""

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from dermsynth.analysis.dose import fit_dose_response, saturating
from dermsynth.stats import bh_adjust, bootstrap_difference, fisher_test, prop_test, wald_ci, wilson_ci


def test_paper_prop_test_values():
    # 29.4 % vs 26.3 % on 360 test images: the paper's p = 0.39 is the Yates-corrected test
    assert prop_test(0.294, 0.263, 360, 360).p_value == pytest.approx(0.39, abs=0.015)
    assert prop_test(0.294, 0.263, 360, 360, correct=False).p_value == pytest.approx(0.35, abs=0.01)
    p = prop_test(0.313, 0.179, 360, 360).p_value
    assert 3.5e-5 < p < 5.5e-5
    assert p * 12 == pytest.approx(5.3e-4, rel=0.12)  # BH over 12 comparisons, smallest p


def test_uncorrected_matches_statsmodels_ztest():
    for p1, p2 in ((0.5, 0.4), (0.2, 0.35), (0.9, 0.85)):
        ours = prop_test(p1, p2, 200, 200, correct=False).p_value
        ref = proportions_ztest([p1 * 200, p2 * 200], [200, 200])[1]
        assert ours == pytest.approx(ref, rel=1e-9)


def test_corrected_matches_scipy_chi2_contingency():
    from scipy.stats import chi2_contingency

    table = np.array([[80, 120], [60, 140]])
    ref = chi2_contingency(table, correction=True)[1]
    assert prop_test(0.4, 0.3, 200, 200).p_value == pytest.approx(ref, rel=1e-9)


def test_cis_and_bh_and_fisher():
    lo, hi = wald_ci(0.3, 360)
    assert (lo, hi) == pytest.approx((0.3 - 1.96 * np.sqrt(0.21 / 360), 0.3 + 1.96 * np.sqrt(0.21 / 360)), abs=1e-4)
    assert wilson_ci(0.3, 360) == pytest.approx(proportion_confint(108, 360, method="wilson"))
    p = [0.01, 0.04, 0.03, 0.2]
    assert np.allclose(bh_adjust(p), multipletests(p, method="fdr_bh")[1])
    assert fisher_test(0.5, 0.2, 100, 100).p_value < 1e-4


def test_bootstrap_difference_covers_truth_and_is_paired():
    rng = np.random.default_rng(0)
    a = rng.random((5, 360)) < 0.6
    b = rng.random((5, 360)) < 0.5
    diff, lo, hi = bootstrap_difference(a, b, reps=500)
    assert lo < diff < hi and lo < 0.1 < hi
    with pytest.raises(ValueError, match="same test images"):
        bootstrap_difference(a, b[:, :100])


def test_dose_response_fit_recovers_saturation():
    r = np.repeat([0, 10, 25, 50, 75], 5).astype(float)
    rng = np.random.default_rng(1)
    acc = saturating(r, 0.3, 0.1, 8.0) + rng.normal(0, 0.005, len(r))
    fit = fit_dose_response(r, acc, reps=100)
    assert fit.converged and fit.c == pytest.approx(8.0, rel=0.35)
    assert fit.ratio90 == pytest.approx(8.0 * np.log(10), rel=0.35)
    assert fit.ratio90_ci[0] <= fit.ratio90 <= fit.ratio90_ci[1]
    with pytest.raises(ValueError, match="3 distinct"):
        fit_dose_response([0, 10], [0.3, 0.4])
