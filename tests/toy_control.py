"""A pure-JAX single-task family for the off-policy tests: a 1-D double integrator that can fall off.

    x′ = x + dt v,   v′ = v + dt u,   u = clip(a, −1, 1)
    reward −(x² + 0.1 v² + 0.01 u²) of the state before the step (gym's pendulum convention)
    termination when |x′| > X_MAX (it fell off), truncation after ``episode_length`` steps

Starts at (x, v) = (START, 0), or uniformly in [−0.5, 0.5] × 0 with ``random_start``. It compiles
in well under a second, so launcher tests (resume, N seeds) cost seconds, and a plain Python loop
reproduces it exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from metarl_jax.envs.base import State, TaskFamily, time_limit

DT = 0.5
X_MAX = 2.0
START = 0.5


class ToyControl(TaskFamily):
    name = "toy_control"
    observation_size = 2
    action_size = 1

    def __init__(self, episode_length: int = 10, random_start: bool = True):
        self.episode_length = episode_length
        self.random_start = random_start

    def sample_tasks(self, key, num_tasks):
        del key
        return jnp.zeros((num_tasks, 0))

    def reset(self, key, task):
        x = jax.random.uniform(key, (), minval=-0.5, maxval=0.5) if self.random_start else jnp.asarray(START)
        obs = jnp.stack([x, jnp.zeros(())]).astype(jnp.zeros(()).dtype)
        zero = jnp.zeros(())
        return State(obs=obs, reward=zero, done=zero, info={"sparse_reward": zero, "truncation": zero},
                     metrics={}, step=jnp.zeros((), jnp.int32), task=task, env_state=obs)

    def step(self, state, action):
        x, v = state.env_state
        u = jnp.clip(action[0], -1.0, 1.0)
        reward = -(x**2 + 0.1 * v**2 + 0.01 * u**2)
        new = jnp.stack([x + DT * v, v + DT * u])
        step = state.step + 1
        done, truncation = time_limit(step, self.episode_length, jnp.abs(new[0]) > X_MAX)
        info = {"sparse_reward": reward, "truncation": truncation}
        return state.replace(obs=new, reward=reward, done=done, info=info, step=step, env_state=new)


def python_rollout(actions, episode_length: int):
    """The collector's output for one environment from START under ``actions``, by a plain loop."""
    out = []
    x, v, t, episode_return = START, 0.0, 0, 0.0
    for a in actions:
        u = min(max(float(a), -1.0), 1.0)
        reward = -(x * x + 0.1 * v * v + 0.01 * u * u)
        nx, nv = x + DT * v, v + DT * u
        t += 1
        terminated = abs(nx) > X_MAX
        truncated = (t >= episode_length) and not terminated
        episode_return += reward
        out.append(dict(obs=(x, v), next_obs=(nx, nv), reward=reward, termination=float(terminated),
                        truncation=float(truncated), ended=terminated or truncated, episode_return=episode_return))
        if terminated or truncated:
            x, v, t, episode_return = START, 0.0, 0, 0.0
        else:
            x, v = nx, nv
    return out
