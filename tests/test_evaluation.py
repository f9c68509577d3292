"""Adaptation-curve statistics: standard errors and 95% t-intervals, one seed or many."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from metarl_jax.evaluation import AdaptationCurve, t_quantile_975


@pytest.mark.parametrize("dof", [1, 2, 5, 10, 29, 30, 31, 50, 200, 10_000])
def test_t_quantile_matches_scipy(dof):
    np.testing.assert_allclose(t_quantile_975(dof), stats.t.ppf(0.975, dof), atol=1e-4)


def test_t_quantile_rejects_zero_dof():
    with pytest.raises(ValueError, match="degrees of freedom must be >= 1"):
        t_quantile_975(0)


def test_one_seed_statistics_are_across_tasks():
    returns = np.random.default_rng(0).normal(size=(7, 3))
    curve = AdaptationCurve(returns)
    np.testing.assert_allclose(curve.mean, returns.mean(0))
    np.testing.assert_allclose(curve.stderr, stats.sem(returns, axis=0))
    low, high = curve.ci95
    ref_low, ref_high = stats.t.interval(0.95, 6, loc=returns.mean(0), scale=stats.sem(returns, axis=0))
    np.testing.assert_allclose(low, ref_low, rtol=1e-4)
    np.testing.assert_allclose(high, ref_high, rtol=1e-4)
    assert curve.to_dict()["num_seeds"] == 1 and np.shape(curve.to_dict()["per_task"]) == (7, 3)


def test_several_seeds_interval_is_across_seed_means():
    """Tasks of one seed share its parameters: the independent units are the seeds' task means."""
    returns = np.random.default_rng(1).normal(size=(4, 5, 3)) + np.arange(4)[:, None, None]
    curve = AdaptationCurve(returns)
    seed_means = returns.mean(axis=1)
    np.testing.assert_allclose(curve.seed_means, seed_means)
    np.testing.assert_allclose(curve.mean, seed_means.mean(0))
    low, high = curve.ci95
    ref_low, ref_high = stats.t.interval(0.95, 3, loc=seed_means.mean(0), scale=stats.sem(seed_means, axis=0))
    np.testing.assert_allclose(low, ref_low, rtol=1e-4)
    np.testing.assert_allclose(high, ref_high, rtol=1e-4)
    out = curve.to_dict()
    assert out["num_seeds"] == 4 and np.shape(out["per_seed"]) == (4, 3) and np.shape(out["per_seed_task"]) == (
        4, 5, 3)
