"""The task-family protocol: what every environment in metarl_jax provides.

A *task family* is a distribution over MDPs that share observation and action
spaces (goals on a semicircle, target velocities, ...). Algorithms only ever see
this protocol, so a user-written family that follows it trains with every
algorithm without edits to the package.

    family.sample_tasks(key, n)     -> task pytree with leading axis n
    family.task_set(split)          -> fixed, seeded split ("train", "val", ...)
    family.reset(key, task)         -> State
    family.step(state, action)      -> State
    family.observation_size, family.action_size, family.episode_length

``State.reward`` is the dense (meta-training) reward and
``State.info["sparse_reward"]`` the sparse (meta-test) reward.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

TASKS_PER_SPLIT = 100  # MAESN and TESP use 100 training and 100 validation tasks.

# Fixed seeds for the named splits, so that every run sees the same tasks.
SPLIT_SEEDS = {"train": 1000, "val": 2000, "ood": 3000}


@struct.dataclass
class State:
    """Environment state for one task and one episode (jumanji/brax style).

    Attributes:
      obs: observation, shape [observation_size].
      reward: dense reward of the last transition, scalar.
      done: 1.0 once the episode has ended (termination or time-out), else 0.0.
      info: dict of arrays; always holds "sparse_reward" and "truncation".
      metrics: dict of scalars a family reports for analysis (positions, distances).
      step: number of steps taken in this episode (int32).
      task: the task this episode is solving.
      env_state: family-private physics state.
    """

    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    info: dict
    metrics: dict
    step: jax.Array
    task: Any
    env_state: Any


class TaskFamily(abc.ABC):
    """Base class for task families. Subclasses implement the four methods and sizes."""

    #: registry name, also written into configs and checkpoints
    name: str = "custom"
    #: the splits task_set accepts
    splits: tuple[str, ...] = ("train", "val")

    observation_size: int
    action_size: int
    episode_length: int

    @abc.abstractmethod
    def sample_tasks(self, key: jax.Array, num_tasks: int) -> Any:
        """Draws ``num_tasks`` tasks from the (training) task distribution."""

    def task_set(self, split: str, num_tasks: int = TASKS_PER_SPLIT) -> Any:
        """A fixed, seeded set of tasks. Same split name -> same tasks, always."""
        check_split(self, split)
        return self.sample_tasks(jax.random.key(SPLIT_SEEDS[split]), num_tasks)

    @abc.abstractmethod
    def reset(self, key: jax.Array, task: Any) -> State:
        """Starts an episode of ``task``."""

    @abc.abstractmethod
    def step(self, state: State, action: jax.Array) -> State:
        """Advances one (frame-skipped) control step."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def check_split(family: Any, split: str) -> None:
    splits = tuple(getattr(family, "splits", ("train", "val")))
    if split not in splits:
        raise ValueError(
            f"task_set: unknown split {split!r} for family {getattr(family, 'name', family)!r}; "
            f"this family defines {list(splits)}"
        )


def time_limit(step: jax.Array, episode_length: int, terminated: jax.Array | None = None):
    """Returns (done, truncation) for an episode that ends at ``episode_length`` steps."""
    truncation = (step >= episode_length).astype(jnp.float32)
    if terminated is None:
        return truncation, truncation
    done = jnp.maximum(terminated.astype(jnp.float32), truncation)
    return done, truncation * (1.0 - terminated.astype(jnp.float32))


_REQUIRED_METHODS = ("sample_tasks", "task_set", "reset", "step")
_REQUIRED_SIZES = ("observation_size", "action_size", "episode_length")


def validate_family(family: Any) -> None:
    """Checks that an object follows the task-family protocol; raises ValueError if not.

    Called by ``algos.make`` so that a user's family fails with a clear message
    before anything is compiled.
    """
    name = getattr(family, "name", type(family).__name__)
    missing = [m for m in _REQUIRED_METHODS if not callable(getattr(family, m, None))]
    if missing:
        raise ValueError(
            f"task family {name!r} is missing the protocol methods {missing}; a family must "
            f"provide {list(_REQUIRED_METHODS)} (see metarl_jax.envs.TaskFamily)"
        )
    for attr in _REQUIRED_SIZES:
        value = getattr(family, attr, None)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(
                f"task family {name!r}: {attr} must be a positive int, got {value!r}"
            )


def check_kwargs(cls_or_fn: Any, kwargs: Mapping[str, Any], what: str) -> None:
    """Raises ValueError naming the valid keyword arguments if ``kwargs`` has unknown ones."""
    target = cls_or_fn.__init__ if inspect.isclass(cls_or_fn) else cls_or_fn
    params = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"{what}: unknown keyword argument(s) {unknown}; valid ones are {valid}")
