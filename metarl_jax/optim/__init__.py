"""Optimisers: the TRPO step (conjugate gradient, HVP, line search) and policy optimisers."""

from metarl_jax.optim.policy_update import (
    PolicyObjective,
    PolicyOptimizer,
    guard_nonfinite,
    ppo,
    trpo,
    vpg,
)
from metarl_jax.optim.trpo import TrpoInfo, conjugate_gradient, hessian_vector_product, trpo_step

__all__ = [
    "PolicyObjective",
    "PolicyOptimizer",
    "TrpoInfo",
    "conjugate_gradient",
    "guard_nonfinite",
    "hessian_vector_product",
    "ppo",
    "trpo",
    "trpo_step",
    "vpg",
]
