"""Trust-region policy optimisation step, entirely inside jit (Schulman et al. 2015).

minimise L(θ) subject to KL(π_old ‖ π_θ) ≤ δ:

1. g = ∇L(θ₀); F v = ∇²KL(θ₀) v by forward-over-reverse differentiation (our own
   Hessian-vector product, linearised once and reused by every CG iteration).
2. x ≈ F⁻¹ g by conjugate gradient (``cg_iters`` iterations, damping λ: (F + λI) x = g).
3. β = sqrt(2δ / xᵀF x); candidate θ = θ₀ − r^k β x for k = 0, 1, ... (backtracking).
4. Accept the first candidate with L(θ) < L(θ₀) and KL ≤ δ; otherwise keep θ₀.
   ``batched_line_search`` evaluates all candidates in one vmapped pass and takes the
   first acceptable one (same result; more work, but no sequential dependency: for
   accelerators, where one pass over all candidates costs about as much as one).

Defaults are rllab's ``ConjugateGradientOptimizer`` (cg_iters 10, damping 1e-5,
backtrack ratio 0.8, 15 backtracks), as used by MAML-TRPO and MAESN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def conjugate_gradient(
    matvec: Callable[[jax.Array], jax.Array], b: jax.Array, num_iters: int = 10, residual_tol: float = 1e-10
) -> jax.Array:
    """Solves A x = b for symmetric positive-definite A given only x ↦ A x."""

    def body(_, carry):
        x, r, p, r_dot_r = carry
        # Once the residual is below tolerance, freeze (a while-loop with a fixed trip count).
        active = r_dot_r > residual_tol
        ap = matvec(p)
        alpha = r_dot_r / jnp.maximum(jnp.dot(p, ap), 1e-30)
        x_new = x + alpha * p
        r_new = r - alpha * ap
        r_dot_r_new = jnp.dot(r_new, r_new)
        p_new = r_new + (r_dot_r_new / jnp.maximum(r_dot_r, 1e-30)) * p
        keep = lambda new, old: jnp.where(active, new, old)  # noqa: E731
        return keep(x_new, x), keep(r_new, r), keep(p_new, p), keep(r_dot_r_new, r_dot_r)

    x0 = jnp.zeros_like(b)
    x, *_ = jax.lax.fori_loop(0, num_iters, body, (x0, b, b, jnp.dot(b, b)))
    return x


def hessian_vector_product(fn: Callable[[jax.Array], jax.Array], x0: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """v ↦ ∇²fn(x0) v, linearising ∇fn once (forward-over-reverse) so repeated products are cheap."""
    _, hvp = jax.linearize(jax.grad(fn), x0)
    return hvp


def gauss_newton_vector_product(
    outputs_and_weights: Callable[[jax.Array], tuple[Any, Any]], x0: jax.Array
) -> Callable[[jax.Array], jax.Array]:
    """v ↦ Jᵀ W J v with J = ∂y/∂x at x0 and W a diagonal weight pytree like y.

    For a divergence at its minimum (the TRPO KL at the sampling parameters) this is
    exactly its Hessian, at the cost of one JVP and one VJP of y.
    """
    outputs = lambda x: outputs_and_weights(x)[0]  # noqa: E731
    _, weights = outputs_and_weights(x0)
    weights = jax.lax.stop_gradient(weights)
    _, jvp = jax.linearize(outputs, x0)
    vjp = jax.linear_transpose(jvp, x0)
    return lambda v: vjp(jax.tree.map(jnp.multiply, weights, jvp(v)))[0]


class TrpoInfo(NamedTuple):
    loss_before: jax.Array
    loss_after: jax.Array
    kl: jax.Array
    accepted: jax.Array
    num_backtracks: jax.Array
    grad_norm: jax.Array
    step_norm: jax.Array


def trpo_step(
    loss_and_kl_fn: Callable[[Any], tuple[jax.Array, jax.Array]],
    params: Any,
    max_kl: float,
    cg_iters: int = 10,
    cg_damping: float = 1e-5,
    backtrack_ratio: float = 0.8,
    max_backtracks: int = 15,
    fisher_outputs: Callable[[Any], tuple[Any, Any]] | None = None,
    fisher_kl_fn: Callable[[Any], jax.Array] | None = None,
    batched_line_search: bool = False,
    gradient_fn: Callable[[Any], jax.Array] | None = None,
) -> tuple[Any, TrpoInfo]:
    """One TRPO update of ``params``; rejects the step (returns ``params``) if the line search fails.

    ``loss_and_kl_fn(params) -> (L, KL)`` evaluates both on one pass, since for
    meta-learners both go through the same inner adaptation. With
    ``fisher_outputs(params) -> (y, W)`` the KL Hessian is applied in Gauss–Newton form
    (see ``gauss_newton_vector_product``); otherwise by differentiating the KL twice
    (``fisher_kl_fn``'s if given, e.g. the KL on a subsample of the batch, else the KL of
    ``loss_and_kl_fn``). The line search always checks the full KL. ``gradient_fn(params) -> L̂``
    supplies the ascent direction's gradient when the estimator differs from the function the line
    search evaluates (MAML's DiCE meta-gradient against its realized inner step); by default it is
    the gradient of ``loss_and_kl_fn``'s loss.
    """
    flat0, unravel = ravel_pytree(params)
    flat_loss_and_kl = lambda flat: loss_and_kl_fn(unravel(flat))  # noqa: E731
    if fisher_kl_fn is None:
        flat_kl = lambda flat: flat_loss_and_kl(flat)[1]  # noqa: E731
    else:
        flat_kl = lambda flat: fisher_kl_fn(unravel(flat))  # noqa: E731

    if gradient_fn is None:
        (loss_before, _), grad = jax.value_and_grad(flat_loss_and_kl, has_aux=True)(flat0)
    else:
        loss_before = flat_loss_and_kl(flat0)[0]
        grad = jax.grad(lambda flat: gradient_fn(unravel(flat)))(flat0)
    if fisher_outputs is None:
        fisher = hessian_vector_product(flat_kl, flat0)
    else:
        fisher = gauss_newton_vector_product(lambda flat: fisher_outputs(unravel(flat)), flat0)
    damped_fisher = lambda v: fisher(v) + cg_damping * v  # noqa: E731
    direction = conjugate_gradient(damped_fisher, grad, cg_iters)
    step_size = jnp.sqrt(2.0 * max_kl / (jnp.dot(direction, damped_fisher(direction)) + 1e-8))
    full_step = step_size * direction

    def evaluate(k):
        candidate = flat0 - backtrack_ratio**k * full_step
        return (candidate, *flat_loss_and_kl(candidate))

    def acceptable(loss, kl):
        return jnp.isfinite(loss) & jnp.isfinite(kl) & (loss < loss_before) & (kl <= max_kl)

    if batched_line_search:
        candidates, losses, kls = jax.vmap(evaluate)(jnp.arange(max_backtracks, dtype=flat0.dtype))
        ok = acceptable(losses, kls)
        first = jnp.argmax(ok)  # the first acceptable candidate (0 if none is)
        accepted = ok[first]
        num_tries = jnp.where(accepted, first + 1, max_backtracks).astype(jnp.int32)
        candidate, loss_after, kl = candidates[first], losses[first], kls[first]
    else:
        def cond(carry):
            k, accepted, *_ = carry
            return (~accepted) & (k < max_backtracks)

        def body(carry):
            k, _, _, _, _ = carry
            candidate, loss, kl = evaluate(k.astype(flat0.dtype))
            return k + 1, acceptable(loss, kl), candidate, loss, kl

        init = (jnp.zeros((), jnp.int32), jnp.zeros((), bool), flat0, loss_before, jnp.zeros(()))
        num_tries, accepted, candidate, loss_after, kl = jax.lax.while_loop(cond, body, init)
    accepted = accepted & jnp.all(jnp.isfinite(candidate))
    new_flat = jnp.where(accepted, candidate, flat0)
    info = TrpoInfo(
        loss_before=loss_before,
        loss_after=jnp.where(accepted, loss_after, loss_before),
        kl=jnp.where(accepted, kl, 0.0),
        accepted=accepted,
        num_backtracks=num_tries - 1,
        grad_norm=jnp.linalg.norm(grad),
        step_norm=jnp.linalg.norm(new_flat - flat0),
    )
    return unravel(new_flat), info
