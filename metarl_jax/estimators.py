"""Returns, advantages, baselines and policy-gradient surrogates.

All functions take time as the last axis ([..., T]) and a ``mask`` that is 1.0
on steps that were taken. They are pure and shape-checked (rlax style).

Surrogates. Every policy-gradient surrogate here has the same *first* derivative,
the REINFORCE estimate E[∇log π(a_t|s_t) A_t]; they differ in what their second
derivative estimates, which is what a MAML-style meta-gradient differentiates:

* ``vpg_surrogate``  Σ log π · A: samples held fixed, so the Hessian estimate
  lacks the ∇log π ∇log πᵀ A term (the original MAML implementation; biased).
* ``lvc_surrogate``  Σ (π/⊥π) · A: ProMP's low-variance curvature objective.
* ``dice_surrogate`` Σ (□(W_t) − □(W_{t−1})) · A_t, W_t = Σ_{t'≤t} log π: the
  "loaded" DiCE objective, unbiased for derivatives of every order.

What a meta-gradient built from them estimates (the infinite-batch objective
J_post(θ + α E ĝ) or MAML's finite-batch one E_D[J_post(θ + α ĝ(D))], and the
α²·Cov(ĝ, Ĥ) bias of DiCE) is tabulated in ``docs/design_notes.md``, "What the
estimators estimate", and checked in closed form by ``tests/test_gradient_meta.py``.

Baselines (``BASELINES``, every learner's ``baseline`` field): ``"linear"`` (rllab's
feature regression fitted on the batch itself, own episode included: biased, e.g. by
the factor 1 − 1/n on a bandit), ``"none"`` and ``"leave_one_out"`` (each episode's
baseline from the *other* episodes only: unbiased).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def discounted_cumsum(x: jax.Array, mask: jax.Array, discount: float) -> jax.Array:
    """y_t = Σ_{k≥t} discount^{k−t} x_k over the valid steps, by a reverse scan over time."""
    chex.assert_equal_shape([x, mask])
    x = x * mask

    def backward(carry, inputs):
        x_t, m_t = inputs
        y_t = x_t + discount * carry * m_t
        return y_t, y_t

    xs = (jnp.moveaxis(x, -1, 0), jnp.moveaxis(mask, -1, 0))
    _, y = jax.lax.scan(backward, jnp.zeros(x.shape[:-1]), xs, reverse=True)
    return jnp.moveaxis(y, 0, -1) * mask


def discounted_returns(rewards: jax.Array, mask: jax.Array, discount: float) -> jax.Array:
    """R_t = Σ_{k≥t} γ^{k−t} r_k (no bootstrap at the end of an episode, as in rllab)."""
    return discounted_cumsum(rewards, mask, discount)


def gae(rewards: jax.Array, values: jax.Array, mask: jax.Array, discount: float, gae_lambda: float,
        bootstrap_value: jax.Array | None = None) -> jax.Array:
    """Generalised advantage estimation (Schulman et al. 2016).

    δ_t = r_t + γ V(s_{t+1}) − V(s_t), with V = 0 after the last valid step;
    A_t = Σ_k (γλ)^k δ_{t+k}.

    ``bootstrap_value`` ([...]): V(s_T) after the last step of the time axis, for episodes the
    horizon truncated (pass 0 where the episode terminated); None: 0 (no bootstrap, as in rllab).
    """
    chex.assert_equal_shape([rewards, values, mask])
    last = jnp.zeros_like(values[..., :1]) if bootstrap_value is None else bootstrap_value[..., None] * mask[..., -1:]
    chex.assert_equal_shape([last, values[..., :1]])
    next_values = jnp.concatenate([values[..., 1:] * mask[..., 1:], last], axis=-1)
    deltas = rewards + discount * next_values - values
    return discounted_cumsum(deltas, mask, discount * gae_lambda)


def value_loss(values: jax.Array, targets: jax.Array, mask: jax.Array, old_values: jax.Array | None = None,
               clip: float | None = None) -> jax.Array:
    """½ mean_t (V(s_t) − V̂_t)² over the valid steps; with ``clip`` (PPO2's value clipping),
    ½ mean_t max((V − V̂)², (V_old + clip(V − V_old, ±ε) − V̂)²)."""
    chex.assert_equal_shape([values, targets, mask])
    squared = (values - targets) ** 2
    if clip is not None:
        chex.assert_equal_shape([values, old_values])
        clipped = old_values + jnp.clip(values - old_values, -clip, clip)
        squared = jnp.maximum(squared, (clipped - targets) ** 2)
    return 0.5 * masked_mean(squared, mask)


# ----------------------------------------------------------------------------- baseline


def linear_baseline_features(obs: jax.Array, mask: jax.Array) -> jax.Array:
    """rllab's LinearFeatureBaseline features [o, o², t, t², t³, 1], o clipped to ±10, t = step/100."""
    chex.assert_rank(obs, 3)  # [E, T, obs]
    o = jnp.clip(obs, -10.0, 10.0)
    t = jnp.broadcast_to(jnp.arange(obs.shape[1], dtype=obs.dtype)[None, :, None] / 100.0, (*obs.shape[:2], 1))
    features = jnp.concatenate([o, o**2, t, t**2, t**3, jnp.ones_like(t)], axis=-1)
    return features * mask[..., None]


def fit_linear_baseline(obs: jax.Array, returns: jax.Array, mask: jax.Array) -> jax.Array:
    """Fits the linear feature baseline to one task's episodes in closed form; returns V(s_t), [E, T].

    Ridge regression (FᵀF + λI) w = FᵀR with λ = 1e-5, raised ×10 up to four times
    if the solve is not finite (rllab's fallback), all inside jit.
    """
    chex.assert_rank([obs, returns, mask], [3, 2, 2])
    features = linear_baseline_features(obs, mask).reshape(-1, obs.shape[-1] * 2 + 4)
    targets = (returns * mask).reshape(-1)
    gram = features.T @ features
    rhs = features.T @ targets
    eye = jnp.eye(gram.shape[0], dtype=gram.dtype)
    regs = 1e-5 * 10.0 ** jnp.arange(5, dtype=gram.dtype)
    solutions = jax.vmap(lambda reg: jnp.linalg.solve(gram + reg * eye, rhs))(regs)
    finite = jnp.all(jnp.isfinite(solutions), axis=-1)
    first_finite = jnp.argmax(finite)
    coeffs = jnp.where(jnp.any(finite), solutions[first_finite], jnp.zeros_like(rhs))
    values = features @ coeffs
    return jax.lax.stop_gradient(values.reshape(returns.shape) * mask)


def normalize(x: jax.Array, mask: jax.Array, center_only: bool = False) -> jax.Array:
    """(x − mean) / (std + 1e-8) over the valid entries (rllab's center_adv)."""
    mean = masked_mean(x, mask)
    centered = (x - mean) * mask
    if center_only:
        return centered
    std = jnp.sqrt(masked_mean(centered**2, mask))
    return centered / (std + 1e-8)


def leave_one_out_baseline(returns: jax.Array, mask: jax.Array) -> jax.Array:
    """b_{e,t} = mean of R_{j,t} over the other episodes j ≠ e still running at t (0 if none is): [..., E, T].

    b_{e,t} is a function of the other episodes only, so E[∇log π(a_{e,t}|s_{e,t}) b_{e,t}] = 0 and
    R − b keeps the REINFORCE estimate unbiased (the linear baseline, fitted on episode e too, does
    not). With one-step episodes R_e − b_e = n/(n − 1) (R_e − R̄).
    """
    chex.assert_equal_shape([returns, mask])
    chex.assert_rank(returns, {2, 3, 4})
    # Sums over j ≠ e as a product with 1 − I (not Σ_j − own, which would carry episode e's rounding).
    others = 1.0 - jnp.eye(returns.shape[-2], dtype=returns.dtype)
    highest = jax.lax.Precision.HIGHEST
    total_of_others = jnp.einsum("ej,...jt->...et", others, returns * mask, precision=highest)
    count_of_others = jnp.einsum("ej,...jt->...et", others, mask, precision=highest)
    values = jnp.where(count_of_others > 0, total_of_others / jnp.maximum(count_of_others, 1.0), 0.0)
    return jax.lax.stop_gradient(values * mask)


BASELINES = ("linear", "none", "leave_one_out")


def baseline_values(baseline: str, obs: jax.Array, returns: jax.Array, mask: jax.Array) -> jax.Array:
    """V(s_t) of one task's episodes for ``baseline`` in ``BASELINES``: [E, T]."""
    if baseline == "linear":
        return fit_linear_baseline(obs, returns, mask)
    if baseline == "none":
        chex.assert_equal_shape([returns, mask])
        return jnp.zeros_like(returns)
    if baseline == "leave_one_out":
        return leave_one_out_baseline(returns, mask)
    raise ValueError(f"baseline must be one of {list(BASELINES)}, got {baseline!r}")


def advantages(
    obs: jax.Array,
    rewards: jax.Array,
    mask: jax.Array,
    discount: float,
    gae_lambda: float,
    normalize_advantages: bool,
    baseline: str = "linear",
) -> jax.Array:
    """One task's advantages: ``baseline`` values of this batch, GAE, optional normalisation.

    Shapes: obs [E, T, obs], rewards and mask [E, T]. With gae_lambda = 1, A = R − b. Only
    "none" and "leave_one_out" without ``normalize_advantages`` keep the policy-gradient
    estimate unbiased: normalising subtracts the batch mean, own episode included.
    """
    returns = discounted_returns(rewards, mask, discount)
    values = baseline_values(baseline, obs, returns, mask)
    adv = gae(rewards, values, mask, discount, gae_lambda)
    if normalize_advantages:
        adv = normalize(adv, mask)
    return jax.lax.stop_gradient(adv)


# ----------------------------------------------------------------------------- score-function terms


SCORE_BASELINES = ("none", "leave_one_out")


def leave_one_out_mean(x: jax.Array) -> jax.Array:
    """b_i = mean_{j ≠ i} x_j over the leading axis: the RLOO baseline of N i.i.d. samples [N].

    With N = 1 there is no other sample and b = 0 (as ``leave_one_out_baseline`` where no other
    episode is running).
    """
    chex.assert_rank(x, 1)
    if x.shape[0] < 2:
        return jnp.zeros_like(x)
    return (jnp.sum(x) - x) / (x.shape[0] - 1)


def score_function_surrogate(log_likelihoods: jax.Array, returns: jax.Array, baseline: str = "none") -> jax.Array:
    """mean_i ⊥(R_i − b_i) · log p_θ(X_i): its gradient estimates ∇_θ E_{X ~ p_θ}[R(X)] from N i.i.d. X_i.

    ``log_likelihoods`` [N] are log p_θ(X_i) (differentiable), ``returns`` [N] the R_i.
    ``baseline`` in ``SCORE_BASELINES``: "none" (b = 0) or "leave_one_out" (b_i = the mean of the
    other R_j, independent of X_i, so still unbiased). MAML's ``outer_estimator="pre_update_score"``
    uses it with X_i the inner batches of task i and R_i its post-update reward.
    """
    chex.assert_equal_shape([log_likelihoods, returns])
    chex.assert_rank(returns, 1)
    if baseline == "none":
        centred = returns
    elif baseline == "leave_one_out":
        centred = returns - leave_one_out_mean(returns)
    else:
        raise ValueError(f"score baseline must be one of {list(SCORE_BASELINES)}, got {baseline!r}")
    return jnp.mean(jax.lax.stop_gradient(centred) * log_likelihoods)


# ----------------------------------------------------------------------------- surrogates


def magic_box(x: jax.Array) -> jax.Array:
    """DiCE's □(x) = exp(x − ⊥x): evaluates to 1, its derivative is □(x)·∇x."""
    return jnp.exp(x - jax.lax.stop_gradient(x))


def vpg_surrogate(log_probs: jax.Array, adv: jax.Array, mask: jax.Array) -> jax.Array:
    """mean_t log π(a_t|s_t) A_t: the REINFORCE surrogate with samples held fixed."""
    chex.assert_equal_shape([log_probs, adv, mask])
    return masked_mean(log_probs * adv, mask)


def lvc_surrogate(log_probs: jax.Array, adv: jax.Array, mask: jax.Array) -> jax.Array:
    """ProMP's low-variance curvature objective mean_t [π(a_t|s_t)/⊥π(a_t|s_t)] A_t."""
    chex.assert_equal_shape([log_probs, adv, mask])
    return masked_mean(magic_box(log_probs) * adv, mask)


def dice_surrogate(log_probs: jax.Array, adv: jax.Array, mask: jax.Array) -> jax.Array:
    """Loaded DiCE: mean_t [□(W_t) − □(W_{t−1})] A_t with W_t = Σ_{t'≤t} log π(a_t'|s_t').

    Its value is 0; its gradient is the REINFORCE estimate; its Hessian is an
    unbiased estimate of the objective's Hessian (with λ = 1 advantages), including the
    ∇log π ∇log πᵀ terms across time steps that ``vpg_surrogate`` drops.
    """
    chex.assert_equal_shape([log_probs, adv, mask])
    cumulative = jnp.cumsum(log_probs * mask, axis=-1)
    previous = jnp.concatenate([jnp.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], axis=-1)
    return masked_mean((magic_box(cumulative) - magic_box(previous)) * adv, mask)


SURROGATES = {"vpg": vpg_surrogate, "lvc": lvc_surrogate, "dice": dice_surrogate}


def importance_surrogate(log_ratio: jax.Array, adv: jax.Array, mask: jax.Array, clip: float | None = None) -> jax.Array:
    """mean_t ρ_t A_t with ρ = π/π_old; with ``clip``, PPO's min(ρA, clip(ρ, 1±ε)A)."""
    chex.assert_equal_shape([log_ratio, adv, mask])
    ratio = jnp.exp(log_ratio)
    objective = ratio * adv
    if clip is not None:
        objective = jnp.minimum(objective, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * adv)
    return masked_mean(objective, mask)
