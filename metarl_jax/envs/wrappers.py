"""Family wrappers: ``TimeLimit`` shortens a family's episodes (gym's TimeLimit).

Learners' presets carry their papers' episode lengths (Xu et al.'s Reacher-v1 runs 50 steps,
brax's reacher 1000); ``with_episode_length(family, n)`` applies one without a new family class.
Every other attribute (sizes, splits, action bounds, ``mj_model``) is the wrapped family's.
"""

from __future__ import annotations

from typing import Any

import jax

from metarl_jax.envs.base import State, time_limit


class TimeLimit:
    """``family`` whose episodes are truncated after ``episode_length`` steps (its own terminations kept)."""

    def __init__(self, family: Any, episode_length: int):
        if isinstance(episode_length, bool) or not isinstance(episode_length, int) or episode_length < 1:
            raise ValueError(f"TimeLimit: episode_length must be a positive int, got {episode_length!r}")
        if episode_length > family.episode_length:
            raise ValueError(f"TimeLimit: family {family.name!r} truncates its episodes at {family.episode_length} "
                             f"steps, so they cannot last {episode_length}; build it with "
                             f"episode_length={episode_length} (--env_kwarg=episode_length={episode_length})")
        self.family = family
        self.episode_length = episode_length

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["family"], name)

    def reset(self, key: jax.Array, task: Any) -> State:
        return self.family.reset(key, task)

    def step(self, state: State, action: jax.Array) -> State:
        stepped = self.family.step(state, action)
        terminated = stepped.done * (1.0 - stepped.info["truncation"])
        done, truncation = time_limit(stepped.step, self.episode_length, terminated)
        done = done.astype(stepped.done.dtype)
        return stepped.replace(done=done, info=dict(stepped.info, truncation=truncation.astype(done.dtype)))

    def __repr__(self) -> str:
        return f"TimeLimit({self.family!r}, episode_length={self.episode_length})"


def with_episode_length(family: Any, episode_length: int | None) -> Any:
    """``family`` itself when ``episode_length`` is None or its own, else ``TimeLimit(family, episode_length)``."""
    if episode_length is None or episode_length == family.episode_length:
        return family
    return TimeLimit(family, episode_length)
