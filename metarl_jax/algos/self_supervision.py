"""MAME's self-supervised inner loop and its exploration-policy estimator (Gurumurthy et al. 2019, Sec. 4).

Pure functions over a batch of exploration episodes [..., E, T] (time on the second-to-last axis
of per-step vectors, the last axis of per-step scalars):

* ``window_sum``: the window the target M and the successor representation m_β sum over:
  ``"n_step_return"`` Σ_{k<N} x_{t+k} (the paper's N-step return, N = 15, truncated at the
  episode's end), ``"return"`` Σ_k γ^k x_{t+k}, ``"reward"`` / ``"next_state"`` x_t itself.
* ``targets``: M(s_t, a_t) of eq. (4) and the weight of each step in the regression.
* ``successor_prediction``: M_{β,z}(s_t, a_t) = w_βᵀ m_β(s_t, a_t) with m_β(s_t, a_t) the average of the
  features h_β(s_{t+k}, a_{t+k}, z) over the target's window along the sampled episode: a truncated
  N-step successor representation (normalised by the window's length, as in the author's code), so that
  w_βᵀ m_β predicts the N-step return of the per-step reward w_βᵀ h_β / N.
* ``dice_weights``: □(W_t) with W_t = Σ_{t'≤t} log μ_φ(a_t'|s_t'), as likelihood ratios to the
  sampling explorer (= DiCE's magic box at φ = φ_old in value and every derivative).
* ``explorer_rewards``: eq. (9), r^μ_t = −α ⊥(∂J/∂z')ᵀ ∇_z ℓ_t (one JVP for all t).
* ``explorer_advantages``: eq. (8), rewards → returns → baseline → GAE → normalisation.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from metarl_jax import estimators
from metarl_jax.networks import FeatureRegressor
from metarl_jax.rollout import Trajectory

TARGETS = ("n_step_return", "reward", "return", "next_state")
EXPLORER_BASELINES = ("linear", "value_network", "none")


def n_step_sum(x: jax.Array, mask: jax.Array, n: int) -> jax.Array:
    """y_t = Σ_{k=0}^{n−1} mask_{t+k} x_{t+k} (truncated at T): x [..., T, C], mask [..., T]."""
    chex.assert_equal_shape_prefix([x, mask], mask.ndim)
    num_steps = x.shape[-2]
    masked = x * mask[..., None]
    cumulative = jnp.concatenate([jnp.zeros_like(masked[..., :1, :]), jnp.cumsum(masked, axis=-2)], axis=-2)
    end = jnp.minimum(jnp.arange(num_steps) + n, num_steps)
    return (jnp.take(cumulative, end, axis=-2) - cumulative[..., :num_steps, :]) * mask[..., None]


def discounted_sum(x: jax.Array, mask: jax.Array, discount: float) -> jax.Array:
    """y_t = Σ_{k≥0} γ^k mask_{t+k} x_{t+k}: x [..., T, C], mask [..., T]."""
    channels_first = jnp.moveaxis(x, -1, -2)
    summed = estimators.discounted_cumsum(channels_first, jnp.broadcast_to(mask[..., None, :], channels_first.shape),
                                          discount)
    return jnp.moveaxis(summed, -2, -1)


def window_sum(x: jax.Array, mask: jax.Array, target: str, n_step: int, discount: float) -> jax.Array:
    """The window of ``target`` applied to per-step vectors x [..., T, C] (the same for M and m_β)."""
    if target == "n_step_return":
        return n_step_sum(x, mask, n_step)
    if target == "return":
        return discounted_sum(x, mask, discount)
    if target in ("reward", "next_state"):
        return x * mask[..., None]
    raise ValueError(f"target must be one of {list(TARGETS)}, got {target!r}")


def targets(trajectories: Trajectory, target: str, reward_kind: str, n_step: int,
            discount: float) -> tuple[jax.Array, jax.Array]:
    """(M(s_t, a_t) [..., E, T, C], weight of step t in the regression [..., E, T]).

    Rewards: C = 1. ``"next_state"``: M = s_{t+1} (C = observation size); the last step of the
    batch has no recorded successor and weight 0 (after an early termination the rollout
    repeats the terminal state, which is then s_{t+1}).
    """
    mask = trajectories.mask
    if target == "next_state":
        obs = trajectories.obs
        next_obs = jnp.concatenate([obs[..., 1:, :], obs[..., -1:, :]], axis=-2)
        has_successor = (jnp.arange(mask.shape[-1]) < mask.shape[-1] - 1).astype(mask.dtype)
        return next_obs * mask[..., None], mask * has_successor
    rewards = trajectories.select_rewards(reward_kind)[..., None]
    return window_sum(rewards, mask, target, n_step, discount), mask


def successor_prediction(network: FeatureRegressor, params, inputs: jax.Array, mask: jax.Array, target: str,
                         n_step: int, discount: float, successor_features: bool = True) -> jax.Array:
    """M_{β,z}(s_t, a_t) = w_βᵀ m_β(s_t, a_t): ``inputs`` [..., T, in] are (s_t ⧺ a_t ⧺ z).

    With ``successor_features`` m_β is the mean of h_β over the target's window (the truncated
    successor representation); without, M regresses the target from h_β(s_t, a_t, z).
    """
    features = network.features(params, inputs)
    if successor_features:
        features = window_mean(features, mask, target, n_step, discount)
    return network.head(params, features)


def window_mean(x: jax.Array, mask: jax.Array, target: str, n_step: int, discount: float) -> jax.Array:
    """``window_sum`` divided by the (discounted) number of valid steps in the window: x [..., T, C].

    The author's code averages the features (its ``corrected_successor_rep``) so that m_β's scale, and
    with it ∇_z M and the curvature the inner step α sees, does not grow with N; w_β absorbs the factor.
    """
    count = window_sum(jnp.ones_like(x[..., :1]), mask, target, n_step, discount)
    return window_sum(x, mask, target, n_step, discount) / jnp.maximum(count, 1e-6)


def dice_weights(log_probs: jax.Array, behaviour_log_probs: jax.Array, mask: jax.Array) -> jax.Array:
    """Π_{t'≤t} μ_φ(a_t'|s_t') / μ_old(a_t'|s_t'): [..., T]. At φ = φ_old it is DiCE's □(W_t): value 1,
    ∇_φ = ∇_φ W_t; after an outer step it stays the likelihood ratio to the sampling explorer."""
    chex.assert_equal_shape([log_probs, behaviour_log_probs, mask])
    return jnp.exp(jnp.cumsum((log_probs - behaviour_log_probs) * mask, axis=-1))


def weighted_loss(per_step: jax.Array, weights: jax.Array, dice: jax.Array | None = None) -> jax.Array:
    """The inner loss L = Σ_t □_t ℓ_t w_t / Σ_t w_t over a task's batch (a per-step mean)."""
    chex.assert_equal_shape([per_step, weights])
    weighted = per_step * weights if dice is None else dice * per_step * weights
    return jnp.sum(weighted) / jnp.maximum(jnp.sum(weights), 1.0)


def explorer_rewards(per_step_losses, z: jax.Array, outer_gradient: jax.Array, weights: jax.Array,
                     fast_lr: float) -> jax.Array:
    """Eq. (9): r^μ_t = −α ⊥(∂J/∂z')ᵀ ∇_z ℓ_t · w_t / Σ w, [E, T].

    ``per_step_losses(z) -> ℓ [E, T]``; ``outer_gradient`` ∂J/∂z' of the post-update objective J.
    Σ_t r^μ_t = (∂J/∂z')ᵀ (z' − z): the first-order change of J the inner step makes, split over the
    steps whose losses made it; and Σ_t ∇_φ W_t r^μ_t is the DiCE gradient dJ/dφ through z'.
    """
    _, directional = jax.jvp(per_step_losses, (z,), (jax.lax.stop_gradient(outer_gradient),))
    chex.assert_equal_shape([directional, weights])
    return jax.lax.stop_gradient(-fast_lr * directional * weights / jnp.maximum(jnp.sum(weights), 1.0))


def rms_normalize(x: jax.Array, mask: jax.Array) -> jax.Array:
    """x / (sqrt(mean x²) + 1e-8) over the valid steps (no centring: the author's explorer rewards)."""
    return x / (jnp.sqrt(estimators.masked_mean(x**2, mask)) + 1e-8)


def explorer_advantages(obs: jax.Array, rewards: jax.Array, mask: jax.Array, values: jax.Array | None,
                        discount: float, gae_lambda: float, baseline: str, normalize_rewards: bool,
                        normalize_advantages: bool) -> tuple[jax.Array, jax.Array]:
    """Eq. (8) for one task: (A^μ, R^μ) [E, T] from the rewards r^μ of its exploration episodes.

    ``baseline`` in ``EXPLORER_BASELINES``: rllab's linear feature baseline fitted on R^μ, a value
    network's ``values`` V(s_t), or none; then GAE(γ, λ) (λ = 1: A = R − V).
    """
    if normalize_rewards:
        rewards = rms_normalize(rewards, mask)
    returns = estimators.discounted_returns(rewards, mask, discount)
    if baseline == "value_network":
        chex.assert_equal_shape([values, rewards])
        baseline_values = jax.lax.stop_gradient(values) * mask
    else:
        baseline_values = estimators.baseline_values(baseline, obs, returns, mask)
    adv = estimators.gae(rewards, baseline_values, mask, discount, gae_lambda)
    if normalize_advantages:
        adv = estimators.normalize(adv, mask)
    return jax.lax.stop_gradient(adv), jax.lax.stop_gradient(returns)
