"""``from_brax``: any ``brax.envs.Env`` as a single-task family.

The single-task control suite and users' own brax environments share this code
path. The family has exactly one task (an empty array), so every algorithm that
trains on task families also trains on a plain brax environment.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from metarl_jax.envs.base import State, TaskFamily, time_limit


class BraxFamily(TaskFamily):
    """Wraps a ``brax.envs.Env``; the sparse reward equals the dense one."""

    splits = ("train", "val")

    def __init__(self, env: Any, episode_length: int = 1000, name: str | None = None,
                 observation_size: int | None = None):
        if isinstance(episode_length, bool) or not isinstance(episode_length, int) or episode_length <= 0:
            raise ValueError(f"from_brax: episode_length must be a positive int, got {episode_length!r}")
        for attr in ("reset", "step", "observation_size", "action_size"):
            if attr not in dir(env):  # not hasattr: brax's observation_size property runs an eager reset
                raise ValueError(f"from_brax: {type(env).__name__} is not a brax.envs.Env (it has no {attr!r})")
        self.env = env
        self.name = name or f"brax_{type(env).__name__.lower()}"
        # brax's observation_size property runs a reset eagerly (slow for MJX); trace it instead (a few
        # seconds for an MJX model: callers that know it, e.g. the control suite's cache, pass it).
        if observation_size is None:
            observation_size = int(jax.eval_shape(env.reset, jax.random.PRNGKey(0)).obs.shape[-1])
        self.observation_size = observation_size
        self.action_size = int(env.action_size)
        self.episode_length = episode_length

    def sample_tasks(self, key: jax.Array, num_tasks: int) -> jax.Array:
        del key
        return jnp.zeros((num_tasks, 0))

    def reset(self, key: jax.Array, task: jax.Array) -> State:
        inner = self.env.reset(key)
        zero = jnp.zeros(())
        return State(
            obs=inner.obs,
            reward=zero,
            done=zero,
            info={"sparse_reward": zero, "truncation": zero},
            metrics=dict(inner.metrics),
            step=jnp.zeros((), jnp.int32),
            task=task,
            env_state=inner,
        )

    def step(self, state: State, action: jax.Array) -> State:
        inner = self.env.step(state.env_state, action)
        step = state.step + 1
        done, truncation = time_limit(step, self.episode_length, terminated=inner.done)
        return state.replace(
            obs=inner.obs,
            reward=inner.reward,
            done=done,
            info={"sparse_reward": inner.reward, "truncation": truncation},
            metrics=dict(inner.metrics),
            step=step,
            env_state=inner,
        )


def from_brax(env: Any, episode_length: int = 1000, name: str | None = None) -> BraxFamily:
    """Wraps ``env`` (a ``brax.envs.Env``) as a single-task family."""
    return BraxFamily(env, episode_length=episode_length, name=name)
