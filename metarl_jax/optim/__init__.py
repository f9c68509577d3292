"""Optimisers: the TRPO step (conjugate gradient, HVP, line search) and policy optimisers."""

from metarl_jax.optim.policy_update import (
    Minibatches,
    PolicyObjective,
    PolicyOptimizer,
    fisher_matrix,
    fisher_product,
    guard_nonfinite,
    minibatch_partition,
    policy_loss,
    ppo,
    trpo,
    vpg,
)
from metarl_jax.optim.trpo import TrpoInfo, conjugate_gradient, hessian_vector_product, trpo_step

__all__ = [
    "Minibatches",
    "PolicyObjective",
    "PolicyOptimizer",
    "TrpoInfo",
    "conjugate_gradient",
    "fisher_matrix",
    "fisher_product",
    "guard_nonfinite",
    "hessian_vector_product",
    "minibatch_partition",
    "policy_loss",
    "ppo",
    "trpo",
    "trpo_step",
    "vpg",
]
