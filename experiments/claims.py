"""The papers' claims, as declarative entries that ``experiments.reproduce`` runs.

A claim names the paper and figure, and for each scale (``smoke``: tiny, for tests; ``demo``: the
smallest version that still shows the effect, for ``make demo``, where a claim has one; ``cpu``: at
most about 30 minutes on 2 CPU cores; ``paper``: the papers' settings, for a GPU) the panels to run. A
panel is one comparison on one task family: the runs (method, family, preset, overrides, budget),
the meta-test protocol every run is evaluated with, the statistic that decides it, and the paper's
numbers where they exist. Every run goes through ``experiments.train`` and ``experiments.evaluate``
with ``--num_seeds``, so its directory is an ordinary run directory.

Statistics look at the adaptation curves of the panel's runs (``eval/adaptation_curve.json``: one
curve per seed) and return a ``Verdict``. Seeds are the independent units: a difference between
methods is a Welch t-interval over their seed means, a method's improvement with adaptation a paired
t-interval over its seeds. A claim holds at a scale when the 95 % interval excludes zero in the
claimed direction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np

from metarl_jax.evaluation import t_quantile_975

SCALES = ("smoke", "demo", "cpu", "paper")


@dataclasses.dataclass(frozen=True)
class Run:
    """One method's run: ``experiments.train`` flags (its label is also the run directory's name)."""

    label: str
    algo: str
    env: str
    num_steps: int
    preset: str | None = None
    overrides: tuple[str, ...] = ()
    env_kwargs: tuple[str, ...] = ()
    log_every: int = 10
    eval_every: int = 0  # > 0: evaluate during training too (a learning curve over seeds in metrics.jsonl)
    eval_splits: tuple[str, ...] = ()  # the splits of those evaluations (default: the launcher's, val)

    def train_args(self) -> list[str]:
        args = [f"--algo={self.algo}", f"--env={self.env}", f"--num_steps={self.num_steps}",
                f"--log_every={min(self.log_every, self.num_steps)}", f"--checkpoint_every={self.num_steps}"]
        args += [f"--eval_every={self.eval_every}"] if self.eval_every else []
        args += [f"--eval_splits={','.join(self.eval_splits)}"] if self.eval_splits else []
        args += [f"--preset={self.preset}"] if self.preset else []
        args += [f"--override={o}" for o in self.overrides] + [f"--env_kwarg={k}" for k in self.env_kwargs]
        return args

    def replace(self, **changes: Any) -> Run:
        return dataclasses.replace(self, **changes)

    def spec(self, num_seeds: int):
        """The launcher's ``RunSpec`` of this run (validates the algo, env, preset, overrides, kwargs)."""
        from types import SimpleNamespace

        from experiments.common import RunSpec

        return RunSpec.from_flags(SimpleNamespace(algo=self.algo, env=self.env, preset=self.preset,
                                                  override=list(self.overrides), env_kwarg=list(self.env_kwargs),
                                                  seed=0, num_seeds=num_seeds))


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The meta-test of every run of a panel (``experiments.evaluate`` flags; None: the config's)."""

    reward: str | None = None
    split: str = "val"
    num_tasks: int | None = None
    adaptation_steps: int | None = None
    curve_name: str = "adaptation_curve"  # eval/<curve_name>.json of every run

    def evaluate_args(self) -> list[str]:
        args = [f"--split={self.split}", f"--curve_name={self.curve_name}"]
        for flag, value in (("reward", self.reward), ("num_tasks", self.num_tasks),
                            ("adaptation_steps", self.adaptation_steps)):
            if value is not None:
                args.append(f"--{flag}={value}")
        return args


@dataclasses.dataclass(frozen=True)
class Verdict:
    statement: str  # what is claimed, e.g. "MAESN's sparse return after 100 test steps exceeds MAML's"
    holds: bool | None  # None: cannot be decided (a method is missing, one seed, ...)
    difference: float = math.nan
    ci95: tuple[float, float] = (math.nan, math.nan)
    num_seeds: int = 0
    reason: str = ""

    def line(self, scale: str) -> str:
        if self.holds is None:
            return f"{self.statement}: cannot be decided at {scale} scale ({self.reason})"
        low, high = self.ci95
        status = "holds" if self.holds else "does not hold"
        return (f"{self.statement}: difference {self.difference:.3g}, 95 % CI [{low:.3g}, {high:.3g}], "
                f"{self.num_seeds} seeds; the claim {status} at {scale} scale")


def welch_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(mean(a) − mean(b), 95 % Welch t-interval) of two independent samples (degrees of freedom floored)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    difference = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0.0:
        return difference, difference, difference
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile_975(max(1, int(dof))) * se
    return difference, difference - half, difference + half


def paired_interval(x: np.ndarray) -> tuple[float, float, float]:
    """(mean, 95 % t-interval) of paired differences ``x`` (one per seed)."""
    x = np.asarray(x, float)
    mean = float(x.mean())
    half = t_quantile_975(len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def _after_steps(step: int, curve: np.ndarray, units: tuple[str, str] = ("test step", "test steps")) -> str:
    """A statement's ' after K test steps' (nothing for a single-task learner's one-point curve)."""
    if curve.shape[-1] == 1:
        return ""
    k = step % curve.shape[-1]
    return f" after {k} {units[k != 1]}"


@dataclasses.dataclass(frozen=True)
class Exceeds:
    """``method``'s return after ``step`` adaptation steps exceeds that of the best of ``others``
    (Welch interval over seed means)."""

    method: str
    others: tuple[str, ...]
    step: int = -1
    what: str = "return"

    def decide(self, curves: Mapping[str, np.ndarray]) -> Verdict:
        present = [o for o in self.others if o in curves]
        rivals = " and ".join(self.others) if len(self.others) <= 2 else "the best of " + ", ".join(self.others)
        if self.method not in curves or not present:
            missing = [m for m in (self.method, *self.others) if m not in curves]
            return Verdict(f"{self.method}'s {self.what} exceeds that of {rivals}", None,
                           reason=f"no runs of {', '.join(missing)}")
        mine = curves[self.method][:, self.step]
        best = max(present, key=lambda o: curves[o][:, self.step].mean())
        statement = (f"{self.method}'s {self.what}{_after_steps(self.step, curves[self.method])} exceeds "
                     + (f"{best}'s" if len(present) == 1 else f"the best other method's ({best})"))
        seeds = min(len(mine), len(curves[best]))
        if seeds < 2:
            return Verdict(statement, None, reason="one seed gives no interval")
        difference, low, high = welch_interval(mine, curves[best][:, self.step])
        return Verdict(statement, bool(low > 0), difference, (float(low), float(high)), seeds)


@dataclasses.dataclass(frozen=True)
class Improves:
    """``method``'s return after ``step`` adaptation steps exceeds its return before adaptation
    (paired over seeds)."""

    method: str
    step: int = -1
    what: str = "return"
    # What the curve's index counts, singular and plural (PEARL: trajectories of context).
    units: tuple[str, str] = ("test step", "test steps")
    before: str = "pre-update"  # what index 0 is (PEARL: "first trajectory's (z ~ prior)")

    def decide(self, curves: Mapping[str, np.ndarray]) -> Verdict:
        if self.method not in curves:
            return Verdict(f"{self.method} improves with adaptation", None, reason=f"no run of {self.method}")
        curve = curves[self.method]
        statement = (f"{self.method}'s {self.what}{_after_steps(self.step, curve, self.units)} exceeds its "
                     f"{self.before} {self.what}")
        if len(curve) < 2:
            return Verdict(statement, None, reason="one seed gives no interval")
        difference, low, high = paired_interval(curve[:, self.step] - curve[:, 0])
        return Verdict(statement, bool(low > 0), difference, (float(low), float(high)), len(curve))


class LearningCurve(NamedTuple):
    """One seed's meta-test during training: ``env_steps`` [E] at each evaluation and ``returns`` [E, K + 1]."""

    env_steps: np.ndarray
    returns: np.ndarray


def steps_to_threshold(curve: LearningCurve, threshold: float, step: int = -1) -> tuple[float, bool]:
    """(env steps of the first evaluation whose return after ``step`` adaptation steps reaches ``threshold``,
    reached). A seed that never reaches it is censored at its last evaluation (reached False)."""
    returns = np.asarray(curve.returns, float)[:, step]
    hits = np.flatnonzero(returns >= threshold)
    if len(hits):
        return float(curve.env_steps[hits[0]]), True
    return float(curve.env_steps[-1]), False


@dataclasses.dataclass(frozen=True)
class FewerEnvSteps:
    """Meta-training sample efficiency (PEARL, Fig. 3): ``method`` reaches a meta-test return in fewer
    environment steps than ``others``. The threshold is ``threshold``, or (None) the paper's protocol: the
    best rival's final meta-test return (mean over its seeds), i.e. the steps ``method`` needs to match what
    the on-policy methods reach with their whole budget. The statistic is the ratio rival steps / method
    steps: a Welch t-interval on log steps over seeds, exponentiated (a geometric-mean ratio). A seed that
    never reaches the threshold counts at its last evaluation: a censored rival makes the ratio a lower
    bound (said in the verdict), a censored ``method`` an upper bound, and then the claim is not decided.

    ``decide_learning`` reads each run's per-seed learning curves (``--eval_every`` evaluations); the
    returns after ``step`` adaptation steps (``method_step`` for ``method``: e.g. PEARL's trajectory
    index, whose curve counts trajectories of context, not gradient steps).
    """

    method: str
    others: tuple[str, ...]
    threshold: float | None = None
    step: int = -1
    method_step: int = -1
    what: str = "meta-test return"
    # With threshold None: at least this (a rival that learned nothing would make any start "reach" its return).
    min_threshold: float | None = None
    uses_learning_curves: ClassVar[bool] = True

    def decide(self, curves: Mapping[str, np.ndarray]) -> Verdict:
        return Verdict(f"{self.method} reaches the {self.what} in fewer env steps", None,
                       reason="needs learning curves (decide_learning)")

    def decide_learning(self, learning: Mapping[str, Sequence[LearningCurve]]) -> Verdict:
        present = [o for o in self.others if learning.get(o)]
        if not learning.get(self.method) or not present:
            missing = [m for m in (self.method, *self.others) if not learning.get(m)]
            return Verdict(f"{self.method} reaches the {self.what} in fewer env steps", None,
                           reason=f"no learning curves of {', '.join(missing)} (train with --eval_every)")
        final = {o: float(np.mean([c.returns[-1, self.step] for c in learning[o]])) for o in present}
        best = max(present, key=final.get)
        threshold = final[best] if self.threshold is None else float(self.threshold)
        source = f"{best}'s final" if self.threshold is None else "fixed"
        if self.threshold is None and self.min_threshold is not None and threshold < self.min_threshold:
            threshold, source = float(self.min_threshold), f"the floor; {best}'s final is {final[best]:.3g}"
        mine = [steps_to_threshold(c, threshold, self.method_step) for c in learning[self.method]]
        rival = [steps_to_threshold(c, threshold, self.step) for c in learning[best]]
        statement = (f"env steps to a {self.what} of {threshold:.3g} ({source}): {best}'s over {self.method}'s "
                     "(ratio > 1: fewer for " + self.method + ")")
        seeds = min(len(mine), len(rival))
        if seeds < 2:
            return Verdict(statement, None, reason="one seed gives no interval")
        censored = [f"{n} of {self.method}'s seeds never reached it" for n in [sum(not r for _, r in mine)] if n]
        censored += [f"{n} of {best}'s seeds never reached it (ratio is a lower bound)"
                     for n in [sum(not r for _, r in rival)] if n]
        difference, low, high = welch_interval(np.log([s for s, _ in rival]), np.log([s for s, _ in mine]))
        ratio, ci = math.exp(difference), (math.exp(low), math.exp(high))
        if any(not r for _, r in mine):
            return Verdict(statement, None, ratio, ci, seeds, reason="; ".join(censored))
        return Verdict(statement, bool(ci[0] > 1.0), ratio, ci, seeds, reason="; ".join(censored))


@dataclasses.dataclass(frozen=True)
class SmallerGap:
    """``method``'s drop in return from the ``near`` split to the ``far`` one (after ``step`` adaptation
    steps) is smaller than that of the others (TESP Sec. 5.2: the train – D″ gap). The gap is taken per
    seed (the same parameters on both splits); the difference is a Welch interval of the best other
    method's gaps (the smallest) minus ``method``'s, so > 0 means ``method`` generalises better."""

    method: str
    others: tuple[str, ...]
    near: str = "train"
    far: str = "ood"
    step: int = -1

    def _gaps(self, curves: Mapping[str, np.ndarray], label: str) -> np.ndarray | None:
        near, far = curves.get(f"{label}@{self.near}"), curves.get(f"{label}@{self.far}")
        if near is None or far is None:
            return None
        return near[:, self.step] - far[:, self.step]

    def decide(self, curves: Mapping[str, np.ndarray]) -> Verdict:
        statement = f"{self.method}'s {self.near} – {self.far} gap in return is smaller than"
        mine = self._gaps(curves, self.method)
        gaps = {o: g for o in self.others if (g := self._gaps(curves, o)) is not None}
        if mine is None or not gaps:
            return Verdict(f"{statement} {', '.join(self.others)}'s", None,
                           reason=f"no {self.near} and {self.far} meta-tests of {self.method} or the others")
        best = min(gaps, key=lambda o: gaps[o].mean())
        statement += f" {best}'s" if len(gaps) == 1 else f" the smallest other gap ({best}'s)"
        seeds = min(len(mine), len(gaps[best]))
        if seeds < 2:
            return Verdict(statement, None, reason="one seed gives no interval")
        difference, low, high = welch_interval(gaps[best], mine)
        return Verdict(statement, bool(low > 0), difference, (float(low), float(high)), seeds)


@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    runs: tuple[Run, ...]
    statistics: tuple[Any, ...]  # objects with decide(curves: {label: [seeds, K + 1]}) -> Verdict
    protocol: Protocol = Protocol()
    paper: Mapping[str, Sequence[float]] = dataclasses.field(default_factory=dict)  # label -> returns per step
    paper_steps: tuple[int, ...] = ()  # the adaptation steps of the paper's numbers
    # The runs must end at the same number of environment steps (``time/env_steps``): a comparison of
    # sample efficiency. If they do not, no statistic is decided.
    equal_env_steps: bool = False
    # Meta-test every run on each of these splits too (TESP's D, D′, D″: "train", "val", "ood"), with the
    # protocol's other settings. The statistics then also see ``"<label>@<split>"`` curves.
    splits: tuple[str, ...] = ()

    def protocols(self) -> dict[str, Protocol]:
        """Curve key suffix ("" for the protocol itself, "@<split>" for each of ``splits``) -> protocol."""
        out = {"": self.protocol}
        for split in self.splits:  # the protocol's own split is not meta-tested twice
            out[f"@{split}"] = self.protocol if split == self.protocol.split else dataclasses.replace(
                self.protocol, split=split, curve_name=f"adaptation_curve_{split}")
        return out

    @property
    def slug(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.title.lower()).strip("_")


@dataclasses.dataclass(frozen=True)
class Scaled:
    panels: tuple[Panel, ...]
    seeds: int = 5
    notes: str = ""  # what was scaled down, and why the effect can still show


@dataclasses.dataclass(frozen=True)
class Claim:
    name: str
    paper: str
    figure: str
    description: str  # one line, for --list
    scales: Mapping[str, Scaled]
    # experiments.figures commands drawn on each panel's runs besides the comparison (e.g. "trajectories").
    figures: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def scale(self, name: str) -> Scaled:
        if name not in self.scales:
            raise ValueError(f"claim {self.name!r} has no scale {name!r}; it has {sorted(self.scales)}")
        return self.scales[name]


_REGISTRY: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    """Adds a claim (a method's module or this file calls it); names are unique."""
    if claim.name in _REGISTRY:
        raise ValueError(f"claims.register: {claim.name!r} is already registered")
    for scale in claim.scales:
        if scale not in SCALES:
            raise ValueError(f"claim {claim.name!r}: unknown scale {scale!r}; scales are {list(SCALES)}")
    _REGISTRY[claim.name] = claim
    return claim


def names() -> list[str]:
    _load_registrations()
    return sorted(_REGISTRY)


def get(name: str) -> Claim:
    _load_registrations()
    if name not in _REGISTRY:
        raise ValueError(f"unknown claim {name!r}; registered claims are {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def _load_registrations() -> None:
    from experiments import paper_claims  # noqa: F401  (registers the claims on import)
