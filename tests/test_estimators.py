"""Estimators against plain-Python/numpy references and closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import estimators
from metarl_jax.networks import DiagGaussian

E, T = 3, 7


def _masks() -> np.ndarray:
    """Three episodes: full length, ended after 4 steps, ended after 1 step."""
    mask = np.ones((E, T), np.float32)
    mask[1, 4:] = 0.0
    mask[2, 1:] = 0.0
    return mask


def _ref_returns(rewards: np.ndarray, mask: np.ndarray, discount: float) -> np.ndarray:
    """Plain double loop: R_t = Σ_{k≥t, k valid} γ^{k−t} r_k; 0 on invalid steps."""
    out = np.zeros_like(rewards, dtype=np.float64)
    for e in range(rewards.shape[0]):
        length = int(mask[e].sum())
        for t in range(length):
            out[e, t] = sum(discount ** (k - t) * rewards[e, k] for k in range(t, length))
    return out


def _ref_gae(rewards, values, mask, discount, lam) -> np.ndarray:
    """Plain double loop: δ_t = r_t + γV_{t+1} − V_t (V = 0 past the end), A_t = Σ_k (γλ)^k δ_{t+k}."""
    out = np.zeros_like(rewards, dtype=np.float64)
    for e in range(rewards.shape[0]):
        length = int(mask[e].sum())
        deltas = []
        for t in range(length):
            next_v = values[e, t + 1] if t + 1 < length else 0.0
            deltas.append(rewards[e, t] + discount * next_v - values[e, t])
        for t in range(length):
            out[e, t] = sum((discount * lam) ** (k - t) * deltas[k] for k in range(t, length))
    return out


@pytest.mark.parametrize("discount", [0.0, 0.9, 0.99, 1.0])
def test_discounted_returns_match_double_loop(discount):
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=(E, T)).astype(np.float32)
    mask = _masks()
    got = np.asarray(estimators.discounted_returns(jnp.asarray(rewards), jnp.asarray(mask), discount))
    np.testing.assert_allclose(got, _ref_returns(rewards, mask, discount), rtol=1e-5, atol=1e-5)
    # Steps after an episode ended are exactly zero (whatever the rewards there).
    assert np.all(got[mask == 0] == 0.0)


def test_discounted_returns_ignore_rewards_after_episode_end():
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=(E, T)).astype(np.float32)
    mask = _masks()
    garbage = rewards.copy()
    garbage[mask == 0] = 1e3
    a = estimators.discounted_returns(jnp.asarray(rewards), jnp.asarray(mask), 0.95)
    b = estimators.discounted_returns(jnp.asarray(garbage), jnp.asarray(mask), 0.95)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=0)


@pytest.mark.parametrize("discount,lam", [(0.99, 1.0), (0.99, 0.95), (0.9, 0.0), (1.0, 0.5)])
def test_gae_matches_double_loop(discount, lam):
    rng = np.random.default_rng(2)
    rewards = rng.normal(size=(E, T)).astype(np.float32)
    values = rng.normal(size=(E, T)).astype(np.float32)
    mask = _masks()
    values_garbage = values.copy()
    values_garbage[mask == 0] = 50.0  # V after the end must not leak in
    got = np.asarray(estimators.gae(jnp.asarray(rewards), jnp.asarray(values_garbage), jnp.asarray(mask),
                                    discount, lam))
    np.testing.assert_allclose(got, _ref_gae(rewards, values, mask, discount, lam), rtol=1e-5, atol=1e-5)
    assert np.all(got[mask == 0] == 0.0)


def test_gae_lambda_one_with_zero_values_is_discounted_return():
    rng = np.random.default_rng(3)
    rewards = rng.normal(size=(E, T)).astype(np.float32)
    mask = _masks()
    got = estimators.gae(jnp.asarray(rewards), jnp.zeros((E, T)), jnp.asarray(mask), 0.9, 1.0)
    np.testing.assert_allclose(np.asarray(got), _ref_returns(rewards, mask, 0.9), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- baseline


def _features_by_hand(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """rllab LinearFeatureBaseline features, one row per (episode, step), zero rows when masked."""
    rows = []
    for e in range(obs.shape[0]):
        for t in range(obs.shape[1]):
            o = np.clip(obs[e, t].astype(np.float64), -10.0, 10.0)
            tt = t / 100.0
            row = np.concatenate([o, o**2, [tt, tt**2, tt**3, 1.0]]) * mask[e, t]
            rows.append(row)
    return np.asarray(rows)


def test_linear_baseline_features_by_hand():
    rng = np.random.default_rng(4)
    obs = (rng.normal(size=(E, T, 2)) * 8).astype(np.float32)  # some |o| > 10 to exercise the clip
    assert np.abs(obs).max() > 10
    mask = _masks()
    got = np.asarray(estimators.linear_baseline_features(jnp.asarray(obs), jnp.asarray(mask))).reshape(E * T, -1)
    np.testing.assert_allclose(got, _features_by_hand(obs, mask), rtol=1e-6, atol=1e-6)


def test_fit_linear_baseline_equals_numpy_ridge():
    rng = np.random.default_rng(5)
    obs = rng.normal(size=(E, T, 2)).astype(np.float32)
    returns = rng.normal(size=(E, T)).astype(np.float32)
    mask = _masks()
    features = _features_by_hand(obs, mask)
    targets = (returns * mask).reshape(-1).astype(np.float64)
    coeffs = np.linalg.solve(features.T @ features + 1e-5 * np.eye(features.shape[1]), features.T @ targets)
    expected = (features @ coeffs).reshape(E, T) * mask
    got = np.asarray(estimators.fit_linear_baseline(jnp.asarray(obs), jnp.asarray(returns), jnp.asarray(mask)))
    # float32 solve of a poorly conditioned (t, t², t³ columns) Gram matrix: loose-ish tolerance.
    np.testing.assert_allclose(got, expected, rtol=0, atol=5e-3)
    assert np.all(got[mask == 0] == 0.0)
    # Sanity: the fit explains part of the variance (it is not trivially zero).
    assert np.abs(got).max() > 0.05


def test_fit_linear_baseline_recovers_linear_target():
    rng = np.random.default_rng(6)
    obs = rng.normal(size=(E, T, 2)).astype(np.float32)
    mask = _masks()
    features = _features_by_hand(obs, mask)
    # Weights on [o(2), o²(2), t, t², t³, 1]; the t² and t³ columns are tiny (t ≤ 0.06), keep them 0
    w = np.array([1.5, -2.0, 0.5, 0.25, 3.0, 0.0, 0.0, -1.0])
    target = (features @ w).reshape(E, T).astype(np.float32)
    got = np.asarray(estimators.fit_linear_baseline(jnp.asarray(obs), jnp.asarray(target), jnp.asarray(mask)))
    np.testing.assert_allclose(got, target * mask, rtol=0, atol=2e-3)


def _ref_leave_one_out(returns: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Plain loops: b_{e,t} = mean of R_{j,t} over the episodes j ≠ e with step t valid, 0 if there is none."""
    out = np.zeros_like(returns, dtype=np.float64)
    for e in range(returns.shape[0]):
        for t in range(returns.shape[1]):
            others = [returns[j, t] for j in range(returns.shape[0]) if j != e and mask[j, t] > 0]
            out[e, t] = np.mean(others) if others and mask[e, t] > 0 else 0.0
    return out


def test_leave_one_out_baseline_matches_loops_and_ignores_its_own_episode():
    rng = np.random.default_rng(9)
    returns = rng.normal(size=(E, T)).astype(np.float32)
    mask = _masks()  # at t ≥ 4 only episode 0 runs: its baseline there is 0
    baseline = jax.jit(estimators.leave_one_out_baseline)
    got = np.asarray(baseline(jnp.asarray(returns), jnp.asarray(mask)))
    np.testing.assert_allclose(got, _ref_leave_one_out(returns, mask), rtol=1e-6, atol=1e-6)
    assert np.all(got[0, 4:] == 0.0) and np.all(got[mask == 0] == 0.0)
    # Episode e's baseline is a function of the other episodes only (what keeps R − b unbiased).
    moved = returns.copy()
    moved[1] += 100.0
    shifted = np.asarray(baseline(jnp.asarray(moved), jnp.asarray(mask)))
    np.testing.assert_array_equal(shifted[1], got[1])
    assert not np.allclose(shifted[0], got[0])
    # Leading task axes: [N, E, T] is N independent batches.
    stacked = baseline(jnp.stack([jnp.asarray(returns), jnp.asarray(moved)]), jnp.stack([jnp.asarray(mask)] * 2))
    np.testing.assert_array_equal(np.asarray(stacked), np.stack([got, shifted]))
    with pytest.raises(AssertionError):
        estimators.leave_one_out_baseline(jnp.asarray(returns[0]), jnp.asarray(mask[0]))  # no episode axis


@pytest.mark.parametrize("baseline", estimators.BASELINES)
def test_advantages_subtract_the_chosen_baseline(baseline):
    rng = np.random.default_rng(10)
    obs = rng.normal(size=(E, T, 2)).astype(np.float32)
    rewards = rng.normal(size=(E, T)).astype(np.float32)
    mask = _masks()
    got = np.asarray(jax.jit(estimators.advantages, static_argnums=(3, 4, 5, 6))(
        jnp.asarray(obs), jnp.asarray(rewards), jnp.asarray(mask), 0.9, 1.0, False, baseline))
    returns = _ref_returns(rewards, mask, 0.9)
    values = {"none": np.zeros_like(returns), "leave_one_out": _ref_leave_one_out(returns, mask),
              "linear": np.asarray(estimators.fit_linear_baseline(jnp.asarray(obs), jnp.asarray(returns, jnp.float32),
                                                                  jnp.asarray(mask)))}[baseline]
    np.testing.assert_allclose(got, (returns - values) * mask, rtol=1e-5, atol=1e-5)  # λ = 1: A = R − b


def test_unknown_baseline_lists_the_choices():
    with pytest.raises(ValueError, match="'linear', 'none', 'leave_one_out'"):
        estimators.baseline_values("mean", jnp.zeros((E, T, 1)), jnp.zeros((E, T)), jnp.ones((E, T)))
    with pytest.raises(ValueError, match="'none', 'leave_one_out'"):
        estimators.score_function_surrogate(jnp.zeros(3), jnp.zeros(3), "normalized")


def test_only_the_leave_one_out_baseline_keeps_reinforce_unbiased_on_a_bandit():
    """a ~ N(θ, 1), r = −(a − g)², n = 2: E[(1/n) Σ u_i A_i] = −2d with no or a leave-one-out baseline,
    −2d(1 − 1/n) with the batch's own (linear = mean) baseline (module docstring of test_gradient_meta)."""
    n, d, draws = 2, 1.0, 200_000
    u = jax.random.normal(jax.random.key(0), (draws, n, 1))
    rewards = -((d + u[..., 0]) ** 2)

    @jax.jit
    def mean_gradient(rewards):
        adv = {b: jax.vmap(lambda r: estimators.advantages(jnp.zeros((n, 1, 1)), r, jnp.ones((n, 1)), 1.0, 1.0,
                                                             False, b))(rewards) for b in estimators.BASELINES}
        return {b: (jnp.mean(u * a), jnp.std(jnp.mean(u * a, axis=(1, 2))) / np.sqrt(draws)) for b, a in adv.items()}

    got = mean_gradient(rewards[..., None])
    for baseline, expected in (("none", -2 * d), ("leave_one_out", -2 * d), ("linear", -2 * d * (1 - 1 / n))):
        mean, se = map(float, got[baseline])
        assert abs(mean - expected) < 4 * se, (baseline, mean, se, expected)
    assert abs(float(got["linear"][0]) + 2 * d) > 20 * float(got["linear"][1])


def test_leave_one_out_mean_and_score_function_surrogate():
    x = jnp.asarray([1.0, 2.0, 6.0])
    np.testing.assert_allclose(np.asarray(estimators.leave_one_out_mean(x)), [4.0, 3.5, 1.5])
    np.testing.assert_array_equal(np.asarray(estimators.leave_one_out_mean(x[:1])), [0.0])  # no other sample
    # ∇ mean_i ⊥(R_i − b_i) log p_θ(X_i) = mean_i (R_i − b_i) ∇log p_θ(X_i); the returns carry no gradient.
    features = jnp.asarray([[1.0, 0.5], [-2.0, 1.0], [0.5, 3.0]])
    for baseline, centred in (("none", x), ("leave_one_out", x - jnp.asarray([4.0, 3.5, 1.5]))):
        grad_theta, grad_returns = jax.grad(
            lambda th, r, b=baseline: estimators.score_function_surrogate(features @ th, r, b), argnums=(0, 1))(
            jnp.asarray([0.2, -0.1]), x)
        np.testing.assert_allclose(np.asarray(grad_theta), np.asarray(jnp.mean(centred[:, None] * features, 0)),
                                   rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(grad_returns), 0.0)
    with pytest.raises(AssertionError):
        estimators.score_function_surrogate(jnp.zeros(3), jnp.zeros(2))


# ----------------------------------------------------------------------------- normalize


def test_normalize_masked_mean_zero_std_one():
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(E, T)) * 3 + 5).astype(np.float32)
    mask = _masks()
    x_garbage = x.copy()
    x_garbage[mask == 0] = 1e4
    got = np.asarray(estimators.normalize(jnp.asarray(x_garbage), jnp.asarray(mask)))
    valid = mask == 1
    ref = (x[valid] - x[valid].mean()) / (x[valid].std() + 1e-8)
    np.testing.assert_allclose(got[valid], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[valid].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(got[valid].std(), 1.0, rtol=1e-5)
    assert np.all(got[~valid] == 0.0)
    centred = np.asarray(estimators.normalize(jnp.asarray(x_garbage), jnp.asarray(mask), center_only=True))
    np.testing.assert_allclose(centred[valid], x[valid] - x[valid].mean(), rtol=1e-5, atol=1e-4)
    assert np.all(centred[~valid] == 0.0)


# ----------------------------------------------------------------------------- surrogates


def _policy_problem(seed: int = 8, t: int = T):
    """A 1-D Gaussian policy with mean θ₀ + θ₁·s and log σ = θ₂ on fixed random data."""
    rng = np.random.default_rng(seed)
    states = jnp.asarray(rng.normal(size=(E, t)), jnp.float32)
    actions = jnp.asarray(rng.normal(size=(E, t, 1)), jnp.float32)
    adv = jnp.asarray(rng.normal(size=(E, t)), jnp.float32)
    mask = np.ones((E, t), np.float32)
    if t > 4:
        mask[1, 4:] = 0.0
    mask = jnp.asarray(mask)
    theta = jnp.asarray([0.3, -0.7, -0.2], jnp.float32)

    def log_probs(th):
        mean = (th[0] + th[1] * states)[..., None]
        return DiagGaussian(mean, jnp.full_like(mean, th[2])).log_prob(actions)

    return theta, log_probs, adv, mask


def test_surrogates_share_the_reinforce_gradient():
    theta, log_probs, adv, mask = _policy_problem()
    derivs = jax.jit(lambda th: (jax.jacobian(log_probs)(th),
                                 {name: jax.grad(lambda x, s=s: s(log_probs(x), adv, mask))(th)
                                  for name, s in estimators.SURROGATES.items()}))
    jac, grads = derivs(theta)
    jac = np.asarray(jac)  # [E, T, P]: ∇log π_t per step
    m, a = np.asarray(mask), np.asarray(adv)
    reinforce = (jac * (a * m)[..., None]).sum(axis=(0, 1)) / m.sum()
    assert np.abs(reinforce).max() > 1e-2
    for name, grad in grads.items():
        np.testing.assert_allclose(np.asarray(grad), reinforce, rtol=1e-5, atol=1e-6, err_msg=name)


def test_magic_box_value_and_gradient():
    x = jnp.asarray([0.3, -2.0, 5.0])
    np.testing.assert_allclose(np.asarray(estimators.magic_box(x)), np.ones(3), atol=0)
    f = lambda th: jnp.sum(estimators.magic_box(th**2))  # noqa: E731  d/dθ □(θ²) = 2θ
    np.testing.assert_allclose(np.asarray(jax.grad(f)(x)), 2 * np.asarray(x), rtol=1e-6)


def test_surrogate_values_at_sampling_parameters():
    theta, log_probs, adv, mask = _policy_problem()
    lp = log_probs(theta)
    m, a = np.asarray(mask), np.asarray(adv)
    masked_mean_adv = (a * m).sum() / m.sum()
    # ProMP's ratio π/⊥π is 1 at step 0: the LVC objective equals the masked mean advantage.
    np.testing.assert_allclose(float(estimators.lvc_surrogate(lp, adv, mask)), masked_mean_adv, rtol=1e-6)
    np.testing.assert_allclose(float(estimators.dice_surrogate(lp, adv, mask)), 0.0, atol=1e-7)
    vpg_ref = (np.asarray(lp) * a * m).sum() / m.sum()
    np.testing.assert_allclose(float(estimators.vpg_surrogate(lp, adv, mask)), vpg_ref, rtol=1e-5)


def test_single_step_hessians_lvc_equals_dice_and_vpg_lacks_outer_product():
    # 2 parameters: (μ, log σ) of a 1-D Gaussian; T = 1, several episodes.
    rng = np.random.default_rng(9)
    actions = jnp.asarray(rng.normal(size=(4, 1, 1)), jnp.float32)
    adv = jnp.asarray(rng.normal(size=(4, 1)), jnp.float32)
    mask = jnp.asarray([[1.0], [1.0], [0.0], [1.0]])
    theta = jnp.asarray([0.4, -0.3], jnp.float32)

    def log_probs(th):
        return DiagGaussian(jnp.full((4, 1, 1), th[0]), jnp.full((4, 1, 1), th[1])).log_prob(actions)

    all_hessians = jax.jit(lambda th: {name: jax.hessian(lambda x, s=s: s(log_probs(x), adv, mask))(th)
                                       for name, s in estimators.SURROGATES.items()})
    hess = {k: np.asarray(v) for k, v in all_hessians(theta).items()}
    # Hand formulas: log π = −½ z² − s − ½ log 2π, z = (a − μ)e^{−s}
    mu, s = 0.4, -0.3
    h_logpi_sum = np.zeros((2, 2))
    outer_sum = np.zeros((2, 2))
    a_np, adv_np, m_np = np.asarray(actions)[:, 0, 0], np.asarray(adv)[:, 0], np.asarray(mask)[:, 0]
    for a_e, A_e, m_e in zip(a_np, adv_np, m_np, strict=True):
        z = (a_e - mu) * np.exp(-s)
        grad = np.array([z * np.exp(-s), z**2 - 1.0])
        hess_lp = np.array([[-np.exp(-2 * s), -2 * z * np.exp(-s)], [-2 * z * np.exp(-s), -2 * z**2]])
        h_logpi_sum += m_e * A_e * hess_lp
        outer_sum += m_e * A_e * np.outer(grad, grad)
    n = m_np.sum()
    np.testing.assert_allclose(hess["vpg"], h_logpi_sum / n, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hess["lvc"], (h_logpi_sum + outer_sum) / n, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hess["dice"], hess["lvc"], rtol=1e-5, atol=1e-6)
    assert np.abs(outer_sum / n).max() > 1e-2  # the term vpg drops is not negligible here


def test_dice_hessian_multi_step_matches_cumulative_formula():
    """H_dice = mean_t A_t [∇²W_t + ∇W_t∇W_tᵀ − (∇²W_{t−1} + ∇W_{t−1}∇W_{t−1}ᵀ)], W_t = Σ_{t'≤t} log π."""
    theta, log_probs, adv, mask = _policy_problem(seed=10, t=5)
    derivs = jax.jit(lambda th: (jax.jacobian(log_probs)(th), jax.hessian(log_probs)(th),
                                 jax.hessian(lambda x: estimators.dice_surrogate(log_probs(x), adv, mask))(th)))
    jac, hes, got = (np.asarray(d, np.float64) for d in derivs(theta))  # [E,T,P], [E,T,P,P], [P,P]
    m, a = np.asarray(mask, np.float64), np.asarray(adv, np.float64)
    p = theta.shape[0]
    expected = np.zeros((p, p))
    for e in range(m.shape[0]):
        gw_prev, hw_prev = np.zeros(p), np.zeros((p, p))
        for t in range(m.shape[1]):
            gw = gw_prev + m[e, t] * jac[e, t]
            hw = hw_prev + m[e, t] * hes[e, t]
            term = (hw + np.outer(gw, gw)) - (hw_prev + np.outer(gw_prev, gw_prev))
            expected += m[e, t] * a[e, t] * term
            gw_prev, hw_prev = gw, hw
    expected /= m.sum()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("clip", [None, 0.2])
def test_importance_surrogate_matches_ppo_by_hand(clip):
    rng = np.random.default_rng(11)
    log_ratio = rng.normal(scale=0.5, size=(E, T)).astype(np.float32)
    adv = rng.normal(size=(E, T)).astype(np.float32)
    mask = _masks()
    got = float(estimators.importance_surrogate(jnp.asarray(log_ratio), jnp.asarray(adv), jnp.asarray(mask), clip))
    total, count = 0.0, 0.0
    for e in range(E):
        for t in range(T):
            if mask[e, t] == 0:
                continue
            rho = np.exp(np.float64(log_ratio[e, t]))
            if clip is None:
                total += rho * adv[e, t]
            else:
                total += min(rho * adv[e, t], min(max(rho, 1 - clip), 1 + clip) * adv[e, t])
            count += 1
    np.testing.assert_allclose(got, total / count, rtol=1e-5)
    if clip is not None:  # the clip is active on this data
        unclipped = float(estimators.importance_surrogate(jnp.asarray(log_ratio), jnp.asarray(adv),
                                                          jnp.asarray(mask), None))
        assert unclipped > got + 1e-3
