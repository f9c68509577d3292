"""metarl_jax: meta-reinforcement learning for exploration, in pure-functional JAX."""

from metarl_jax import envs  # noqa: F401

__version__ = "0.1.0"
