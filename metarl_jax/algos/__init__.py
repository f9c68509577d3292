"""Algorithms: ``make(name, family, config)`` and ``names()``."""

from __future__ import annotations

from typing import Any

from metarl_jax.algos import (
    adapt_sv,
    ddpg,
    emaml,
    maesn,
    mame,
    maml,
    metasgd,
    pearl,
    policy_gradient,
    ppo,
    promp,
    rl2,
    sac,
    teacher_ddpg,
    tesp,
)
from metarl_jax.algos.base import Algorithm, TrainState
from metarl_jax.algos.config import AlgoConfig, get_preset

_REGISTRY: dict[str, tuple[type[Algorithm], Any]] = {
    "maml": (maml.MAML, maml),
    "metasgd": (metasgd.MetaSGD, metasgd),
    "emaml": (emaml.EMAML, emaml),
    "promp": (promp.ProMP, promp),
    "maesn": (maesn.MAESN, maesn),
    "latent_space": (maesn.LatentSpace, maesn),
    "mame": (mame.MAME, mame),
    "vpg": (policy_gradient.VPG, policy_gradient),
    "trpo": (policy_gradient.TRPO, policy_gradient),
    "ppo": (ppo.PPO, ppo),
    # Recurrent meta-learners (issue 13).
    "rl2": (rl2.RL2, rl2),
    "tesp": (tesp.TESP, tesp),
    "adapt_sv": (adapt_sv.AdaptSV, adapt_sv),
    # Off-policy learners (issue 11).
    "ddpg": (ddpg.DDPG, ddpg),
    "sac": (sac.SAC, sac),
    "teacher_ddpg": (teacher_ddpg.TeacherDDPG, teacher_ddpg),
    # Off-policy meta-RL with probabilistic context (issue 12).
    "pearl": (pearl.PEARL, pearl),
}


def names() -> list[str]:
    return sorted(_REGISTRY)


def _lookup(name: str):
    if name not in _REGISTRY:
        raise ValueError(f"unknown algo {name!r}; valid algos are {names()}")
    return _REGISTRY[name]


def config_class(name: str) -> type[AlgoConfig]:
    return _lookup(name)[0].Config


def presets(name: str) -> dict[str, AlgoConfig]:
    """Named presets of algorithm ``name`` (paper values per task family, plus "smoke")."""
    cls, module = _lookup(name)
    return dict(getattr(module, "PRESETS_BY_ALGO", {}).get(name, getattr(module, "PRESETS", {"paper": cls.Config()})))


def preset(name: str, preset_name: str) -> AlgoConfig:
    return get_preset(presets(name), preset_name, name)


def make(name: str, family: Any, config: AlgoConfig | None = None, mesh: Any = None) -> Algorithm:
    """Builds algorithm ``name`` on ``family``; validates everything before compiling anything."""
    cls, _ = _lookup(name)
    return cls(family, config, mesh=mesh)


__all__ = ["Algorithm", "AlgoConfig", "TrainState", "config_class", "ddpg", "emaml", "maesn", "make", "maml", "mame",
           "metasgd", "names", "pearl", "policy_gradient", "ppo", "preset", "presets", "promp", "rl2", "sac",
           "teacher_ddpg", "tesp"]
