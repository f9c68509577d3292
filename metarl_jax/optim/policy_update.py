"""Policy optimisers shared by every policy-gradient learner (optax-style factories).

An algorithm describes its objective as a function ``params -> PolicyObjective``
(importance log-ratios, advantages, mask, KL to the behaviour policy, extra
penalty). The same three optimisers then serve single-task VPG/TRPO/PPO and the
outer loop of MAML and its relatives:

* ``vpg(lr)``: one Adam step on −mean(ρA) (gradient = REINFORCE at ρ = 1).
* ``ppo(lr, clip, num_epochs, num_minibatches=1)``: Adam epochs on the clipped objective, full-batch or
  over shuffled minibatches (``update(..., minibatches=Minibatches(batch, key))``).
* ``trpo(max_kl, ...)``: the natural-gradient step of ``optim.trpo``.

Every update is guarded: if the loss, gradient or new parameters are not finite
the old parameters and optimiser state are kept (per epoch for PPO) and ``nonfinite``
is reported 1. It is 1 per *update* that skipped anything, whatever the number of epochs,
so ``train/nonfinite_updates`` counts skipped outer updates (meta-iterations) for every
optimiser and algorithm.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from metarl_jax.estimators import importance_surrogate
from metarl_jax.optim.trpo import gauss_newton_vector_product, hessian_vector_product, trpo_step


class PolicyObjective(NamedTuple):
    """What an algorithm's objective returns for a parameter value.

    ``fisher_outputs``/``fisher_weights`` (optional) let TRPO use the Gauss–Newton form
    of the KL Hessian: with y(θ) the distribution parameters the KL depends on and W the
    KL's (diagonal) Hessian in y at y = y_behaviour, ∇²KL(θ₀) = Jᵀ W J exactly, because
    ∇_y KL = 0 there. That needs one JVP and one VJP of y(θ) per product instead of a
    third derivative. Without them TRPO differentiates ``kl`` twice.
    """

    log_ratio: jax.Array  # log π_θ(a|s) − log π_behaviour(a|s), any shape
    advantages: jax.Array  # same shape
    mask: jax.Array  # same shape
    kl: jax.Array  # scalar mean KL(π_behaviour ‖ π_θ), 0 at the sampling parameters
    penalty: jax.Array  # scalar added to the loss (e.g. MAESN's KL to the prior)
    fisher_outputs: Any = None  # y(θ): pytree of distribution parameters
    fisher_weights: Any = None  # W: pytree like y, ∂²KL/∂y² (diagonal) at the behaviour policy


ObjectiveFn = Callable[[Any], PolicyObjective]


class Minibatches(NamedTuple):
    """The data a minibatch optimiser splits: its objective is then ``objective_fn(params, batch)``.

    ``batch`` is a pytree whose leaves share a leading sample axis (trials, tasks, episodes); before
    every epoch the samples are shuffled with a key from ``key`` and cut into equal minibatches.
    """

    batch: Any
    key: jax.Array


class PolicyOptimizer(NamedTuple):
    """``update(objective_fn, params, opt_state, fisher_objective_fn=None, realized_objective_fn=None,
    minibatches=None) -> (params, opt_state, info)``.

    ``objective_fn`` gives the gradient (the estimator). TRPO only:
    ``realized_objective_fn`` is the same objective as a plain function of the parameters, without
    the estimator's derivative-only terms (DiCE's magic boxes, first-order stop-gradients): the line
    search evaluates it and the Fisher is its KL's Hessian, so that the quadratic KL model and the
    KL the line search measures are one function (default: ``objective_fn``).
    ``fisher_objective_fn`` is the realized objective on a subsample of the batch, for the
    Fisher-vector products of conjugate gradient (rllab's ``subsample_factor``).
    ``minibatches`` (first-order optimisers): a ``Minibatches``; ``objective_fn`` then takes
    ``(params, batch)`` and is evaluated on the whole batch or on its minibatches.
    """

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any, dict]]


def _all_finite(tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.array(True)


def guard_nonfinite(old: Any, new: Any, *checks: Any) -> tuple[Any, jax.Array]:
    """Returns (new if everything is finite else old, finite flag).

    A ``lax.cond``, not an element-wise select: the same values, but inside the scanned epochs of a
    recurrent objective (TESP, RL²) the select made XLA's CPU compile 2-3x slower (measured). Under
    ``vmap`` (seeds) the batched flag turns the cond back into a select.
    """
    finite = _all_finite((new, checks))
    old = jax.tree.map(lambda o, n: jnp.asarray(o, n.dtype), old, new)
    kept = jax.lax.cond(finite, lambda: new, lambda: old)
    return kept, finite


def policy_loss(objective: PolicyObjective, clip: float | None = None) -> jax.Array:
    """The loss every policy optimiser here minimises: −mean_t ρ_t A_t + penalty.

    With ``clip`` (PPO) the surrogate is min(ρA, clip(ρ, 1 ± ε) A). Its gradient at ρ = 1
    is the negative policy-gradient estimate, so ``jax.grad(lambda p: policy_loss(objective_fn(p)))``
    is the outer gradient an optimiser sees -- the quantity to check when testing an
    estimator on one's own problem (``docs/design_notes.md``, "What the estimators estimate").
    """
    return -importance_surrogate(objective.log_ratio, objective.advantages, objective.mask, clip) + objective.penalty


def fisher_product(objective_fn: ObjectiveFn, params: Any) -> tuple[Callable[[jax.Array], jax.Array], Any]:
    """(v ↦ F v on the flat parameters, unravel): the KL Hessian product TRPO's CG uses.

    Gauss–Newton form Jᵀ W J when the objective exposes ``fisher_outputs``/``fisher_weights``,
    else the KL differentiated twice; both equal ∇²KL at the sampling parameters.
    """
    flat0, unravel = ravel_pytree(params)
    if objective_fn(params).fisher_outputs is not None:  # traced for its structure only
        def outputs(flat):
            objective = objective_fn(unravel(flat))
            return objective.fisher_outputs, objective.fisher_weights

        return gauss_newton_vector_product(outputs, flat0), unravel
    return hessian_vector_product(lambda flat: objective_fn(unravel(flat)).kl, flat0), unravel


def fisher_matrix(objective_fn: ObjectiveFn, params: Any) -> jax.Array:
    """F = ∇²KL at ``params`` as an explicit [P, P] matrix (P = number of parameters).

    A diagnostic for small problems: κ(F + λI) bounds how much the damped natural-gradient
    solve (TRPO's conjugate gradient, damping λ) amplifies rounding in its inputs, which is
    what decides whether two runs that differ only in reduction order stay close.
    """
    product, _ = fisher_product(objective_fn, params)
    size = ravel_pytree(params)[0].shape[0]
    return jax.vmap(product)(jnp.eye(size, dtype=ravel_pytree(params)[0].dtype))


def check_divides(batch: Any, num_minibatches: int) -> int:
    """The batch's leading (sample) axis size, if it divides into ``num_minibatches`` equal parts."""
    size = jax.tree.leaves(batch)[0].shape[0]
    if size % num_minibatches:
        raise ValueError(f"the batch's leading axis ({size}) must divide into num_minibatches = "
                         f"{num_minibatches} equal minibatches")
    return size


def minibatch_partition(key: jax.Array, batch: Any, num_minibatches: int) -> Any:
    """One epoch's minibatches: the samples (leading axis) shuffled by ``key`` and cut into
    ``num_minibatches`` equal parts, every leaf [num_minibatches, size / num_minibatches, ...]."""
    size = check_divides(batch, num_minibatches)
    order = jax.random.permutation(key, size)
    return jax.tree.map(lambda x: x[order].reshape(num_minibatches, size // num_minibatches, *x.shape[1:]), batch)


def _gradient_optimizer(tx: optax.GradientTransformation, num_epochs: int, clip: float | None,
                        num_minibatches: int = 1) -> PolicyOptimizer:
    if isinstance(num_minibatches, bool) or not isinstance(num_minibatches, int) or num_minibatches < 1:
        raise ValueError(f"num_minibatches must be a positive int, got {num_minibatches!r}")

    def update(objective_fn: Callable[..., PolicyObjective], params: Any, opt_state: Any,
               fisher_objective_fn: Any = None, realized_objective_fn: Any = None,
               minibatches: Minibatches | None = None):
        del fisher_objective_fn, realized_objective_fn  # first-order: no Fisher, no line search
        if minibatches is None and num_minibatches > 1:
            raise ValueError(f"num_minibatches = {num_minibatches}: update needs minibatches=Minibatches(batch, key)")

        def loss_fn(p, batch=None):
            objective = objective_fn(p) if minibatches is None else objective_fn(p, batch)
            return policy_loss(objective, clip), objective.kl

        def gradient_step(carry, batch):
            p, s = carry
            (loss, kl), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, batch)
            updates, new_s = tx.update(grads, s, p)
            new_p = optax.apply_updates(p, updates)
            (new_p, new_s), finite = guard_nonfinite((p, s), (new_p, new_s), loss, grads)
            return (new_p, new_s), (loss, kl, optax.global_norm(grads), finite)

        full_batch = None if minibatches is None else minibatches.batch
        if num_minibatches == 1:
            def epoch(carry, _):
                return gradient_step(carry, full_batch)

            (new_params, new_state), (losses, _, grad_norms, finite) = jax.lax.scan(
                epoch, (params, opt_state), None, length=num_epochs)
            loss_before, grad_norm = losses[0], grad_norms[0]
        else:
            check_divides(full_batch, num_minibatches)

            def epoch(carry, epoch_key):
                # Shuffle the samples, cut them into num_minibatches minibatches, one Adam step on each.
                return jax.lax.scan(gradient_step, carry, minibatch_partition(epoch_key, full_batch, num_minibatches))

            (new_params, new_state), (_, _, _, finite) = jax.lax.scan(
                epoch, (params, opt_state), jax.random.split(minibatches.key, num_epochs))
            # Logged like the full-batch optimiser: the whole batch's loss and gradient before the update.
            (loss_before, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, full_batch)
            grad_norm = optax.global_norm(grads)
        _, kl_after = loss_fn(new_params, full_batch)
        info = {
            "loss": loss_before,
            "kl": kl_after,
            "grad_norm": grad_norm,
            # One count per update that skipped anything (not per epoch): train/nonfinite_updates counts
            # outer updates, the same for every optimiser.
            "nonfinite": jnp.any(~finite).astype(jnp.int32),
        }
        return new_params, new_state, info

    return PolicyOptimizer(init=tx.init, update=update)


def vpg(learning_rate: float, max_grad_norm: float | None = None) -> PolicyOptimizer:
    """One Adam step on the REINFORCE surrogate per update (gradient clipped to ``max_grad_norm``)."""
    tx = optax.adam(learning_rate)
    if max_grad_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)
    return _gradient_optimizer(tx, num_epochs=1, clip=None)


def ppo(learning_rate: float, clip: float, num_epochs: int, max_grad_norm: float | None = None,
        num_minibatches: int = 1) -> PolicyOptimizer:
    """PPO's clipped surrogate: ``num_epochs`` epochs of Adam steps per update.

    ``num_minibatches = 1``: one full-batch step per epoch. Otherwise every epoch reshuffles the
    samples of ``update(..., minibatches=Minibatches(batch, key))`` and takes one step per minibatch
    (``num_epochs × num_minibatches`` steps; the leading axis must divide evenly).
    """
    tx = optax.adam(learning_rate)
    if max_grad_norm is not None:
        tx = optax.chain(optax.clip_by_global_norm(max_grad_norm), tx)
    return _gradient_optimizer(tx, num_epochs=num_epochs, clip=clip, num_minibatches=num_minibatches)


def trpo(
    max_kl: float,
    cg_iters: int = 10,
    cg_damping: float = 1e-5,
    backtrack_ratio: float = 0.8,
    max_backtracks: int = 15,
    batched_line_search: bool = False,
) -> PolicyOptimizer:
    """TRPO on the unclipped importance-sampled surrogate; stateless."""

    def update(objective_fn: ObjectiveFn, params: Any, opt_state: Any, fisher_objective_fn: Any = None,
               realized_objective_fn: Any = None):
        realized_fn = objective_fn if realized_objective_fn is None else realized_objective_fn
        fisher_fn = realized_fn if fisher_objective_fn is None else fisher_objective_fn

        def loss_and_kl(p):
            objective = realized_fn(p)
            return policy_loss(objective), objective.kl

        # The estimator's gradient; None: that of the realized loss (the same function).
        gradient_fn = None if realized_objective_fn is None else (lambda p: policy_loss(objective_fn(p)))

        def fisher_outputs(p):
            objective = fisher_fn(p)
            return objective.fisher_outputs, objective.fisher_weights

        if fisher_fn(params).fisher_outputs is None:  # traced for its structure only
            fisher_outputs = None
        new_params, info = trpo_step(
            loss_and_kl, params, max_kl, cg_iters, cg_damping, backtrack_ratio, max_backtracks, fisher_outputs,
            fisher_kl_fn=None if fisher_fn is realized_fn else lambda p: fisher_fn(p).kl,
            batched_line_search=batched_line_search, gradient_fn=gradient_fn,
        )
        finite = jnp.isfinite(info.loss_before) & jnp.isfinite(info.grad_norm)
        new_params, _ = guard_nonfinite(params, new_params, finite)
        return new_params, opt_state, {
            "loss": info.loss_before,
            "kl": info.kl,
            "grad_norm": info.grad_norm,
            "step_accepted": info.accepted.astype(jnp.float32),
            "num_backtracks": info.num_backtracks,
            "surrogate_improvement": info.loss_before - info.loss_after,
            "nonfinite": 1 - finite.astype(jnp.int32),
        }

    return PolicyOptimizer(init=lambda params: optax.EmptyState(), update=update)
