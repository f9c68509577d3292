"""What every algorithm shares: the train state, jit/scan wrapping, retrace guard.

An algorithm subclass supplies three pure functions and gets the public API:

    init(key)                    -> TrainState
    _train_step(ts)              -> (ts, metrics)      one meta-iteration
    _evaluate(ts, tasks, key)    -> AdaptationCurve

    algo.train_step(ts)          jit(_train_step): ONE XLA program
    algo.train(ts, num_steps)    jit(scan(_train_step)): still one program
    algo.evaluate(ts, tasks, key)

    algo.init_seeds(keys) / train_seeds / evaluate_seeds: N independent seeds vmapped
    over a leading seed axis, still one program.

    algo.record_adaptation(ts, tasks, key): the meta-test with one episode's qpos per task and
    adaptation stage (videos); an algorithm supplies ``_record_stages`` (and ``stage_labels``).
"""

from __future__ import annotations

import abc
import copy
import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metarl_jax import parallel
from metarl_jax.algos.config import AlgoConfig
from metarl_jax.envs.base import validate_family
from metarl_jax.evaluation import AdaptationCurve, AdaptationRecording


@struct.dataclass
class TrainState:
    """The whole state of a run: everything a checkpoint must hold.

    Attributes:
      params: meta-parameters (policy, learned step sizes, ...).
      opt_state: outer optimiser state.
      rng: raw PRNG key data (uint32[2]), so that checkpoints stay plain arrays.
      step: number of completed meta-iterations.
      nonfinite_updates: updates skipped because the loss or gradient was not finite.
      extras: algorithm-specific state (per-task latents, replay buffers, ...).
    """

    params: Any
    opt_state: Any
    rng: jax.Array
    step: jax.Array
    nonfinite_updates: jax.Array
    extras: Any = struct.field(default_factory=dict)


def key_data(key: jax.Array) -> jax.Array:
    """Raw uint32 key data from a typed key (``jax.random.key``) or a legacy uint32 key."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key


def new_train_state(params: Any, opt_state: Any, key: jax.Array, extras: Any = None) -> TrainState:
    return TrainState(
        params=params,
        opt_state=opt_state,
        rng=key_data(key),
        step=jnp.zeros((), jnp.int32),
        nonfinite_updates=jnp.zeros((), jnp.int32),
        extras={} if extras is None else extras,
    )


def split_rng(ts: TrainState, num: int) -> tuple[TrainState, jax.Array]:
    """Splits the train state's key: returns (state with a fresh key, ``num`` keys)."""
    keys = jax.random.split(jax.random.wrap_key_data(ts.rng), num + 1)
    return ts.replace(rng=jax.random.key_data(keys[0])), keys[1:]


class Algorithm(abc.ABC):
    """Base class of every registered algorithm."""

    name: ClassVar[str]
    Config: ClassVar[type[AlgoConfig]]
    #: what the adaptation curve's index k counts (the figures' x-axis)
    curve_x_label: ClassVar[str] = "adaptation steps"

    def __init__(self, family: Any, config: AlgoConfig | None = None, mesh: jax.sharding.Mesh | None = None):
        validate_family(family)
        if config is None:
            config = self.Config()
        if not isinstance(config, self.Config):
            raise ValueError(
                f"{self.name}: config must be a {self.Config.__module__}.Config, got {type(config).__name__}")
        self.family = family
        self.config = config
        self.mesh = mesh if mesh is not None else parallel.task_mesh()
        self.trace_count = 0  # incremented each time the train step is traced (retrace guard)
        self.setup()
        self._jit_train_step = jax.jit(self._counted(self._train_step))
        self._jit_train = jax.jit(self._scan_train, static_argnums=1)
        self._jit_evaluate = jax.jit(self._evaluate)
        # Independent seeds as one program: the same functions vmapped over a leading seed axis.
        self._jit_init_seeds = jax.jit(jax.vmap(self.init))
        self._jit_train_seeds = jax.jit(jax.vmap(self._scan_train, in_axes=(0, None)), static_argnums=1)
        self._jit_evaluate_seeds = jax.jit(jax.vmap(self._evaluate, in_axes=(0, None, 0)))

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Builds networks and optimisers from the config (called once by __init__)."""

    # -- what subclasses implement -------------------------------------------------------

    @abc.abstractmethod
    def init(self, key: jax.Array) -> TrainState:
        """A fresh train state."""

    @abc.abstractmethod
    def _train_step(self, ts: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        """One meta-iteration (pure; traced once)."""

    @abc.abstractmethod
    def _evaluate(self, ts: TrainState, tasks: Any, key: jax.Array) -> AdaptationCurve:
        """Meta-test adaptation curve on ``tasks`` (pure)."""

    # -- public API ----------------------------------------------------------------------

    # The entry points commit an eager init's state first (parallel.commit): one compilation, not two.

    def train_step(self, ts: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        return self._jit_train_step(parallel.commit(ts, self.mesh))

    def train(self, ts: TrainState, num_steps: int) -> tuple[TrainState, dict[str, jax.Array]]:
        """``num_steps`` meta-iterations as one ``lax.scan``; metrics are stacked on axis 0."""
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"train: num_steps must be a positive int, got {num_steps!r}")
        return self._jit_train(parallel.commit(ts, self.mesh), num_steps)

    def evaluate(self, ts: TrainState, tasks: Any, key: jax.Array) -> AdaptationCurve:
        return self._jit_evaluate(parallel.commit(ts, self.mesh), tasks, key)

    def init_seeds(self, keys: jax.Array) -> TrainState:
        """Train states of ``len(keys)`` independent seeds, stacked on a leading seed axis."""
        return self._jit_init_seeds(keys)

    def train_seeds(self, ts: TrainState, num_steps: int) -> tuple[TrainState, dict[str, jax.Array]]:
        """``train`` for every seed of a stacked train state, as one XLA program (metrics: [seeds, steps])."""
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"train_seeds: num_steps must be a positive int, got {num_steps!r}")
        return self._jit_train_seeds(parallel.commit(ts, self.mesh), num_steps)

    def evaluate_seeds(self, ts: TrainState, tasks: Any, keys: jax.Array) -> AdaptationCurve:
        """Adaptation curves of every seed; ``returns`` has shape [seeds, tasks, K + 1]."""
        return self._jit_evaluate_seeds(parallel.commit(ts, self.mesh), tasks, keys)

    def record_adaptation(self, ts: TrainState, tasks: Any, key: jax.Array) -> AdaptationRecording:
        """The meta-test on ``tasks`` with the physics states recorded: per task and stage (``stage_labels``)
        the batch's mean return and one episode's qpos [N, S, T, nq], for videos (``io.video``).

        Runs ``_record_stages`` on a copy of this algorithm whose family is ``RecordQpos(family)`` (MJX
        families only), so the rollouts keep ``Trajectory.qpos``; its own compiled programs are untouched.
        """
        from metarl_jax.envs.recording import RecordQpos

        recorder = copy.copy(self)
        recorder.family = RecordQpos(self.family)
        returns, qpos = jax.jit(recorder._record_stages)(parallel.commit(ts, self.mesh), tasks, key)
        if not jax.tree.leaves(qpos):
            raise ValueError(f"{self.name}: its meta-test rollouts did not record the family's qpos")
        labels = tuple(self.stage_labels())
        if np.shape(returns)[1] != len(labels) or np.shape(qpos)[1] != len(labels):
            raise ValueError(f"{self.name}: _record_stages returned {np.shape(returns)[1]} stages, "
                             f"stage_labels {len(labels)}")
        return AdaptationRecording(labels, np.asarray(returns), np.asarray(qpos))

    def _record_stages(self, ts: TrainState, tasks: Any, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(returns [N, S], qpos [N, S, T, nq]): ``_evaluate`` with one recorded episode per stage (pure)."""
        raise ValueError(f"{self.name} does not record its meta-test for videos (it has no _record_stages)")

    def stage_labels(self) -> list[str]:
        """Names of the stages ``_record_stages`` returns: before adaptation, after 1..K steps."""
        steps = int(getattr(self.config, "eval_adaptation_steps", 0))
        return ["before adaptation"] + [f"after {k} step{'s' if k > 1 else ''}" for k in range(1, steps + 1)]

    def lower_train_step(self, ts: TrainState):
        """The lowered train step, e.g. for ``.compile()`` timing or HLO inspection."""
        return self._jit_train_step.lower(ts)

    # -- helpers -------------------------------------------------------------------------

    def _counted(self, fn):
        @functools.wraps(fn)
        def wrapper(*args):
            self.trace_count += 1
            return fn(*args)

        return wrapper

    def _scan_train(self, ts: TrainState, num_steps: int):
        step_fn = self._counted(self._train_step)
        return jax.lax.scan(lambda carry, _: step_fn(carry), ts, None, length=num_steps)

    def shard(self, tree: Any) -> Any:
        """Shards the leading task axis of ``tree`` over the device mesh."""
        return parallel.shard_tasks(tree, self.mesh)
