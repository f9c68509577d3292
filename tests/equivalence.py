"""Comparing two executions of one program: sharded vs one device, N seeds vs one, P processes vs one.

Such runs compute the same function with a different reduction order, so they differ by
rounding, and a comparison is only as tight as the computation is well conditioned.

Why several float32 TRPO steps are not comparable. In the configuration below (MAML-TRPO,
MLP (8,), 4 tasks × 16 episodes × 10 steps, 44 parameters) the Fisher F = ∇²KL has
λ_max ≈ 3.3 and λ_min ≈ 2e-9 (7 eigenvalues below 1e-6 λ_max: the hidden-layer directions,
whose effect on the policy is scaled by rllab's 0.01 output-layer init), so with rllab's damping
λ = 1e-5 the solve (F + λI) x = g has κ ≈ 3.3e5. In float32 a different reduction order changes
the outer gradient by ≈ 2e-5 (normalised advantages sum to zero: cancellation), and the 10 CG
iterations turned that into a 7.9 % different direction (measured, 1 vs 2 devices): the step's
components along the weakly determined directions are rounding divided by ≈ λ. Those directions
barely move the policy on the batch, but they move the parameters, so the next iteration samples
different trajectories and the difference compounds (1.6 % in ``adapt/param_distance`` after two
steps on one Intel machine, 0.8 % on an AMD one).

So these tests follow three rules:

1. Compare ONE meta-iteration from a common state: no compounding through later rollouts.
2. Run in float64 (``JAX_ENABLE_X64=1`` / ``jax.enable_x64``; every network is created in
   ``networks.float_dtype()``): unit roundoff u = 1.1e-16 instead of 6e-8.
3. Tolerances follow from the computation's conditioning:

   * ``INPUT_RTOL`` for everything computed before an optimiser's solve: rollouts, inner steps,
     the outer gradient g, the Fisher F, losses. Each is a reduction over n ≤ 10³ terms
     (tasks × episodes × steps) with a cancellation ratio Σ|x|/|Σx| ≤ 10² (normalised advantages),
     so the worst-case summation bound n·u·ratio ≈ 10³ · 1.1e-16 · 10² ≈ 1e-11 relative
     (measured: 1e-14 to 2e-14).
   * ``step_rtol(κ)`` for what the natural-gradient step produces (parameters, KL, improvement,
     and the meta-test after the step): an exact solve amplifies relative input perturbations by
     at most κ(F + λI); the truncated CG measured ≤ 5.5 κ at these states, hence 10 κ · INPUT_RTOL.
     κ is computed by the test itself from the explicit F (``condition_number``).
   * ``adam_step_atol`` for one Adam step, whose first update is lr·g/(|g| + ε): a perturbation δg
     moves it by at most lr·|δg|/ε.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from metarl_jax import optim

INPUT_RTOL = 1e-11

# The configuration of the launcher's equivalence tests: 4 tasks (one per device with 4 devices,
# two per process with 2 processes), small enough to materialise the Fisher.
TINY_OVERRIDES = dict(hidden_sizes=(8,), meta_batch_size=4, episodes_per_task=16, eval_num_tasks=4,
                      eval_episodes_per_task=4, eval_adaptation_steps=1)

# Metrics of a train step that depend only on data drawn before the optimiser's solve.
PRE_SOLVE_METRICS = ("train/pre_return", "train/pre_sparse_return", "train/post_return", "train/post_sparse_return",
                     "train/return", "train/sparse_return", "train/grad_norm", "train/loss", "train/policy_std",
                     "adapt/param_distance", "time/env_steps", "train/nonfinite_updates")
# Discrete outcomes of the line search: equal, or the runs are not comparable at all.
DISCRETE_METRICS = ("train/num_backtracks", "train/step_accepted")


def step_rtol(kappa: float) -> float:
    """Relative tolerance of what a damped natural-gradient step computes, given κ(F + λI)."""
    return 10.0 * kappa * INPUT_RTOL


def adam_step_atol(learning_rate: float, gradient_scale: float, eps: float = 1e-8) -> float:
    """Absolute tolerance of parameters after one Adam step whose gradient is known to INPUT_RTOL."""
    return learning_rate * INPUT_RTOL * gradient_scale / eps


def relative_difference(a, b) -> float:
    """max over leaves of ‖a − b‖₂ / ‖a‖₂ (absolute where ‖a‖₂ = 0)."""
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert x.shape == y.shape, (x.shape, y.shape)
        scale = np.linalg.norm(x)
        worst = max(worst, float(np.linalg.norm(x - y) / (scale if scale > 0 else 1.0)))
    return worst


def assert_close(a, b, rtol: float, what: str) -> None:
    difference = relative_difference(a, b)
    assert difference <= rtol, f"{what}: relative difference {difference:.3e} > {rtol:.1e}"


def condition_number(fisher: jax.Array, damping: float) -> float:
    """κ(F + λI) of the explicit (symmetrised) Fisher, in float64."""
    f = np.asarray(fisher, np.float64)
    eigenvalues = np.linalg.eigvalsh(0.5 * (f + f.T))
    return float((eigenvalues[-1] + damping) / (max(eigenvalues[0], 0.0) + damping))


def outer_problem(algo, ts):
    """(the data of one meta-iteration, its outer gradient, its Fisher) as ``_train_step`` would build them.

    Supports MAML and its subclasses (keys: task, sample) and MAESN (one key).
    """
    from metarl_jax.algos.base import split_rng
    from metarl_jax.algos.maesn import MAESN

    if isinstance(algo, MAESN):
        _, (key,) = split_rng(ts, 1)
        batch = algo.collect(ts.params, key)
        objective_fn = lambda p, realized=False: algo.meta_objective(p, *batch, realized=realized)  # noqa: E731
    else:
        _, keys = split_rng(ts, 2)
        batch = algo.collect(ts.params, *keys)
        objective_fn = lambda p, realized=False: algo.meta_objective(  # noqa: E731
            p, batch[0], batch[1], realized=realized)
    gradient = jax.grad(lambda p: optim.policy_loss(objective_fn(p)))(ts.params)
    # TRPO's Fisher: that of the realized objective (what its line search evaluates).
    return batch, gradient, optim.fisher_matrix(lambda p: objective_fn(p, realized=True), ts.params)


def assert_train_step_metrics_close(reference: dict, other: dict, kappa: float, what: str) -> None:
    """One train step's metrics: data before the solve to INPUT_RTOL, the solve's outcome to step_rtol(κ)."""
    wall_clock = lambda d: {k for k in d if k.startswith("time/wall")}  # noqa: E731
    assert reference.keys() - wall_clock(reference) == other.keys() - wall_clock(other), (sorted(reference),
                                                                                          sorted(other))
    for key in reference.keys() - wall_clock(reference):
        a, b = np.asarray(reference[key], np.float64), np.asarray(other[key], np.float64)
        if key in DISCRETE_METRICS or key == "step":
            np.testing.assert_array_equal(a, b, err_msg=f"{what} {key}")
        else:
            rtol = INPUT_RTOL if key in PRE_SOLVE_METRICS else step_rtol(kappa)
            # Scale 1 floor: the loss is a mean of unit-variance advantages that sum to ~0.
            np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol, err_msg=f"{what} {key}")


def float64_enabled() -> bool:
    return jnp.zeros(()).dtype == jnp.float64
