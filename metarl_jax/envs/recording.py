"""``RecordQpos(family)``: the family with each state's ``qpos`` in ``state.info["qpos"]``.

The rollouts (``rollout.rollout``, ``rollout.rollout_trial``) keep ``info["qpos"]`` of every step in
``Trajectory.qpos`` when a family reports it, and nothing otherwise, so training never pays for it. An
algorithm's ``record_adaptation`` runs its meta-test on this wrapper, and the videos replay the recorded
qpos into ``family.mj_model`` (``mujoco.mj_forward``, then render).
"""

from __future__ import annotations

from typing import Any

from metarl_jax.envs.base import State


class RecordQpos:
    """Forwards everything to ``family``; ``reset``/``step`` add ``info["qpos"]`` (the physics state's qpos)."""

    def __init__(self, family: Any):
        if not hasattr(family, "mj_model"):
            raise ValueError(
                f"family {getattr(family, 'name', family)!r} has no MuJoCo model (family.mj_model) to record and "
                "render; for the point families the trajectory figures serve instead: "
                "python -m experiments.figures trajectories --logdirs=RUN --out=DIR")
        self.family = family

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["family"], name)

    def _record(self, state: State) -> State:
        return state.replace(info=dict(state.info, qpos=state.env_state.qpos))

    def reset(self, key, task) -> State:
        return self._record(self.family.reset(key, task))

    def step(self, state: State, action) -> State:
        return self._record(self.family.step(state, action))

    def __repr__(self) -> str:
        return f"RecordQpos({self.family!r})"
