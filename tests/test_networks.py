"""DiagGaussian math against scipy / closed forms; Gaussian policy construction."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from metarl_jax import networks
from metarl_jax.networks import DiagGaussian, make_gaussian_policy, standard_normal_kl

RNG = np.random.default_rng(0)
MEAN1 = RNG.normal(size=(4, 3)).astype(np.float32)
LOG_STD1 = RNG.normal(scale=0.4, size=(4, 3)).astype(np.float32)
MEAN2 = RNG.normal(size=(4, 3)).astype(np.float32)
LOG_STD2 = RNG.normal(scale=0.4, size=(4, 3)).astype(np.float32)


def test_log_prob_equals_scipy_multivariate_normal():
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    got = np.asarray(DiagGaussian(jnp.asarray(MEAN1), jnp.asarray(LOG_STD1)).log_prob(jnp.asarray(x)))
    expected = [stats.multivariate_normal(MEAN1[i], np.diag(np.exp(2.0 * LOG_STD1[i].astype(np.float64)))).logpdf(x[i])
                for i in range(4)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_log_prob_broadcasts_state_independent_log_std():
    x = RNG.normal(size=(4, 3)).astype(np.float32)
    log_std = np.array([0.1, -0.3, 0.5], np.float32)
    got = np.asarray(DiagGaussian(jnp.asarray(MEAN1), jnp.asarray(log_std)).log_prob(jnp.asarray(x)))
    expected = stats.norm(MEAN1, np.exp(log_std)).logpdf(x).sum(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_entropy_closed_form():
    got = np.asarray(DiagGaussian(jnp.asarray(MEAN1), jnp.asarray(LOG_STD1)).entropy())
    expected = [stats.multivariate_normal(MEAN1[i], np.diag(np.exp(2.0 * LOG_STD1[i].astype(np.float64)))).entropy()
                for i in range(4)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Also with a broadcast log_std: H = Σ_d (log σ_d + ½ log 2πe).
    log_std = np.array([0.1, -0.3, 0.5], np.float32)
    got_b = np.asarray(DiagGaussian(jnp.asarray(MEAN1), jnp.asarray(log_std)).entropy())
    np.testing.assert_allclose(got_b, np.full(4, log_std.sum() + 1.5 * math.log(2 * math.pi * math.e)), rtol=1e-5)


def _kl_closed_form(m1, s1, m2, s2):
    v1, v2 = np.exp(2.0 * s1.astype(np.float64)), np.exp(2.0 * s2.astype(np.float64))
    return 0.5 * np.sum(np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0, axis=-1)


def test_kl_closed_form_and_monte_carlo():
    p = DiagGaussian(jnp.asarray(MEAN1), jnp.asarray(LOG_STD1))
    q = DiagGaussian(jnp.asarray(MEAN2), jnp.asarray(LOG_STD2))
    got = np.asarray(p.kl(q))
    np.testing.assert_allclose(got, _kl_closed_form(MEAN1, LOG_STD1, MEAN2, LOG_STD2), rtol=1e-5, atol=1e-6)
    assert np.all(got > 0)
    # Monte-Carlo: E_{x~p}[log p(x) − log q(x)] with 20000 samples per row.
    x = jax.vmap(p.sample)(jax.random.split(jax.random.key(0), 20000))  # [S, 4, 3]
    mc = np.asarray(jnp.mean(p.log_prob(x) - q.log_prob(x), axis=0))
    np.testing.assert_allclose(mc, got, rtol=0.1, atol=0.05)


def test_kl_to_itself_is_zero():
    p = DiagGaussian(jnp.asarray(MEAN1), jnp.asarray(LOG_STD1))
    np.testing.assert_allclose(np.asarray(p.kl(p)), np.zeros(4), atol=1e-6)


def test_standard_normal_kl_closed_form():
    got = np.asarray(standard_normal_kl(jnp.asarray(MEAN1), jnp.asarray(LOG_STD1)))
    v = np.exp(2.0 * LOG_STD1.astype(np.float64))
    expected = 0.5 * np.sum(v + MEAN1.astype(np.float64) ** 2 - 1.0 - np.log(v), axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(standard_normal_kl(jnp.zeros(3), jnp.zeros(3))), 0.0, atol=0)


def test_sample_has_the_distribution_moments():
    mean = jnp.asarray([1.0, -2.0])
    log_std = jnp.asarray([0.0, math.log(0.5)])
    x = np.asarray(jax.vmap(DiagGaussian(mean, log_std).sample)(jax.random.split(jax.random.key(1), 20000)))
    np.testing.assert_allclose(x.mean(0), [1.0, -2.0], atol=0.03)
    np.testing.assert_allclose(x.std(0), [1.0, 0.5], rtol=0.03)


# ----------------------------------------------------------------------------- policies


def test_policy_initial_log_std_and_output_shapes():
    policy = make_gaussian_policy(3, 2, hidden_sizes=(8,), activation="tanh", init_log_std=-0.7)
    params = policy.init(jax.random.key(0))
    dist = policy.apply(params, jnp.ones((5, 3)), None)
    assert dist.mean.shape == (5, 2)
    assert dist.log_std.shape == (5, 2)
    np.testing.assert_allclose(np.asarray(dist.log_std), -0.7, rtol=1e-6)
    assert policy.latent_size == 0
    # The last layer is scaled down: the initial mean is small (rllab init).
    assert np.abs(np.asarray(dist.mean)).max() < 0.5


def test_latent_policy_requires_and_uses_latent():
    policy = make_gaussian_policy(3, 2, hidden_sizes=(8,), latent_size=4, init_log_std=0.3)
    assert policy.latent_size == 4
    params = policy.init(jax.random.key(0))
    obs = jnp.asarray([0.5, -1.0, 2.0])
    with pytest.raises((AssertionError, TypeError, ValueError)):  # latent missing
        policy.apply(params, obs, None)
    with pytest.raises(AssertionError):  # wrong latent size
        policy.apply(params, obs, jnp.zeros((3,)))
    d0 = policy.apply(params, obs, jnp.zeros((4,)))
    d1 = policy.apply(params, obs, jnp.asarray([1.0, -1.0, 2.0, 0.5]))
    assert d0.mean.shape == (2,)
    assert np.abs(np.asarray(d0.mean) - np.asarray(d1.mean)).max() > 1e-6
    np.testing.assert_allclose(np.asarray(d0.log_std), 0.3, rtol=1e-6)


def test_bad_activation_raises_listing_allowed_values():
    with pytest.raises(ValueError) as err:
        make_gaussian_policy(3, 2, activation="sigmoid")
    message = str(err.value)
    assert "sigmoid" in message
    for name in networks.ACTIVATIONS:
        assert name in message
