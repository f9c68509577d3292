"""A user-written task family, defined outside the package: the linear-Gaussian bandit.

One step per episode, a ~ N(θ, σ²), r = −(a − g)². With J(θ) = −(θ − g)² − σ² and
the inner step θ' = θ + α∇J, the expected post-update objective is
J(θ') = −(1 − 2α)²(θ − g)² − σ², whose θ-gradient is −2(1 − 2α)²(θ − g).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metarl_jax.envs import State, TaskFamily


class LinearGaussianBandit(TaskFamily):
    name = "linear_gaussian_bandit"
    observation_size = 1
    action_size = 1
    episode_length = 1

    def sample_tasks(self, key, num_tasks):
        return jax.random.uniform(key, (num_tasks,), minval=-1.0, maxval=1.0)

    def reset(self, key, task):
        zero = jnp.zeros(())
        return State(obs=jnp.zeros((1,)), reward=zero, done=zero,
                     info={"sparse_reward": zero, "truncation": zero}, metrics={},
                     step=jnp.zeros((), jnp.int32), task=task, env_state=zero)

    def step(self, state, action):
        reward = -((action[0] - state.task) ** 2)
        return state.replace(reward=reward, done=jnp.ones(()), step=state.step + 1,
                             info={"sparse_reward": reward, "truncation": jnp.ones(())})


def mean_bias(params):
    """θ: the policy mean for the bandit's constant observation is the output bias."""
    return params["params"]["MLP_0"]["Dense_0"]["bias"]
