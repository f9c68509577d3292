"""TESP, AdaptSV and RL² on a user-written family: bit-identical resume through the launcher, N seeds.

The family is the linear-Gaussian bandit of ``tests/bandit.py``, registered from outside the package
(the cheapest family, so the programs compile fast). Runs are float64 and take ONE Adam step per
meta-iteration (``ppo_epochs=1``, one minibatch), so that a meta-iteration of a seed of the multi-seed
program (``algo.train_seeds``, what ``--num_seeds`` runs) can be compared with its single-seed run to a derived
tolerance (``tests/equivalence.py``): data, inner loop and outer gradient to INPUT_RTOL, the parameters
after the Adam step to ``adam_step_atol`` (the first Adam step moves a coordinate by lr·g/(|g| + ε),
whose sensitivity to g is at most lr/ε; later steps would compound it through the objective's Hessian,
so they are not compared).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import algos, envs
from tests import equivalence as eq
from tests.bandit import LinearGaussianBandit
from tests.test_launcher import last_record, train_main

FAMILY = "linear_gaussian_bandit"
# One Adam step per meta-iteration (RL²: 8 trials, minibatches of 8 = one full-batch step).
OVERRIDES = {"tesp": {"ppo_epochs": 1, "eval_num_tasks": 4},
             "rl2": {"ppo_epochs": 1, "eval_num_tasks": 4, "minibatch_size": 8}}
COMMON = [f"--env={FAMILY}", "--preset=smoke", "--log_every=1", "--checkpoint_every=1", "--progress=false"]
ARGS = {name: [f"--algo={name}", *COMMON, *(f"--override={k}={v}" for k, v in overrides.items())]
        for name, overrides in OVERRIDES.items()}
# Metrics computed after the outer Adam step.
POST_STEP_METRICS = ("train/kl",)


@pytest.fixture(scope="module", autouse=True)
def user_family():
    envs.register(FAMILY, LinearGaussianBandit, overwrite=True)


@pytest.fixture(scope="module", params=sorted(ARGS))
def runs(request, tmp_path_factory):
    """float64, seed 4: 2 steps straight, and 1 step then resumed to 2."""
    name = request.param
    base = tmp_path_factory.mktemp(name)
    with jax.enable_x64(True):
        for logdir, steps in (("straight", [2]), ("resumed", [1, 2])):
            for n in steps:
                code, stderr = train_main([*ARGS[name], "--seed=4", f"--num_steps={n}", f"--logdir={base / logdir}"])
                assert code == 0, stderr
    return name, base


def restore(logdir, step):
    from experiments.common import RunSpec
    from metarl_jax.io.checkpoints import Checkpointer

    spec = RunSpec.from_logdir(str(logdir))
    _, algo = spec.build()
    checkpointer = Checkpointer(str(logdir), spec.algo, spec.env)
    ts = checkpointer.restore(spec.init_state(algo), step)
    checkpointer.close()
    return ts


def test_resume_is_bit_identical(runs):
    name, base = runs
    assert last_record(base / "straight") == last_record(base / "resumed")
    with jax.enable_x64(True):
        straight, resumed = restore(base / "straight", 2), restore(base / "resumed", 2)
    for x, y in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    record = last_record(base / "straight")
    assert all(np.isfinite(v) for v in record.values())
    # TESP: the return after 0..3 fast updates; RL²: episode 1..4 of a trial.
    assert "eval/return_step3" in record and "eval/return_step4" not in record


# RL²'s seeds take the same vmap over the train state as TESP's: slow, to keep `make test` in budget.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "rl2" else n
                                  for n in sorted(OVERRIDES)])
def test_each_seed_equals_its_single_seed_run(name):
    """Seeds 3, 4 as one vmapped program vs seed 4 alone (what ``--num_seeds`` runs): one meta-iteration."""
    with jax.enable_x64(True):
        config = algos.preset(name, "smoke").replace(**OVERRIDES[name])
        algo = algos.make(name, LinearGaussianBandit(), config)
        single, single_metrics = algo.train(algo.init(jax.random.key(4)), 1)
        seeds, seed_metrics = algo.train_seeds(algo.init_seeds(jax.vmap(jax.random.key)(jnp.asarray([3, 4]))), 1)
        assert eq.float64_enabled() and jax.tree.leaves(single.params)[0].dtype == jnp.float64
    row = jax.tree.map(lambda x: np.asarray(x)[1], seeds)
    for key, value in single_metrics.items():
        if key not in POST_STEP_METRICS:
            np.testing.assert_allclose(np.asarray(seed_metrics[key])[1], np.asarray(value), rtol=eq.INPUT_RTOL,
                                       atol=eq.INPUT_RTOL, err_msg=key)
    # One Adam step: |Δθ| ≤ lr·|δg|/ε with |δg| ≤ INPUT_RTOL·‖g‖ (‖g‖: the logged gradient norm).
    atol = eq.adam_step_atol(config.learning_rate, float(single_metrics["train/grad_norm"][0]))
    for x, y in zip(jax.tree.leaves(single.params), jax.tree.leaves(row.params), strict=True):
        np.testing.assert_allclose(y, np.asarray(x), rtol=0, atol=atol)
    np.testing.assert_array_equal(row.rng, np.asarray(single.rng))
    assert eq.relative_difference(jax.tree.map(lambda x: np.asarray(x)[0], seeds.params), row.params) > 1e-3


def test_adapt_sv_trains_on_the_user_family_through_the_launcher(tmp_path):
    code, stderr = train_main(["--algo=adapt_sv", *COMMON, "--num_steps=2", f"--logdir={tmp_path / 'run'}"])
    assert code == 0, stderr
    record = last_record(tmp_path / "run")
    assert record["time/env_steps"] == 2 * 4 * 4 * 1 * 4  # 4 tasks × 4 episodes × 1 step × (3 updates + τ^{K+1})
    assert all(np.isfinite(v) for v in record.values()) and "eval/return_step3" in record
