"""TESP, AdaptSV and RL² through the launcher on a user-written family: resume, N seeds, evaluation.

The family is the linear-Gaussian bandit of ``tests/bandit.py``, registered from outside the package
(the cheapest family, so the launcher's programs compile fast). Runs are float64 and take ONE Adam step
per meta-iteration (``ppo_epochs=1``, one minibatch), so that a meta-iteration of a seed of the
multi-seed program (what ``--num_seeds`` runs) can be compared with its single-seed run to a derived
tolerance (``tests/equivalence.py``): data, inner loop and outer gradient to INPUT_RTOL, the parameters
after the Adam step to ``adam_step_atol`` (the first Adam step moves a coordinate by lr·g/(|g| + ε),
whose sensitivity to g is at most lr/ε; later steps would compound it through the objective's Hessian,
so they are not compared).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import algos, envs
from tests import equivalence as eq
from tests.bandit import LinearGaussianBandit
from tests.test_launcher import last_record, records, train_main

FAMILY = "linear_gaussian_bandit"
COMMON = [f"--env={FAMILY}", "--preset=smoke", "--log_every=1", "--checkpoint_every=1", "--progress=false",
          "--override=ppo_epochs=1", "--override=eval_num_tasks=4"]
ARGS = {
    "tesp": ["--algo=tesp", *COMMON],
    "rl2": ["--algo=rl2", *COMMON, "--override=minibatch_size=8"],  # 8 trials: one full-batch step
}
# Metrics computed before the outer Adam step (data, inner loop, outer loss and gradient).
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


def test_each_seed_equals_its_single_seed_run(runs):
    """Seeds 3, 4 as one vmapped program vs seed 4 alone (what ``--num_seeds`` runs): one meta-iteration."""
    name, base = runs
    config = json.loads((base / "resumed" / "config.json").read_text())["config"]
    with jax.enable_x64(True):
        algo = algos.make(name, LinearGaussianBandit(), algos.config_class(name).from_dict(config))
        single, single_metrics = algo.train(algo.init(jax.random.key(4)), 1)
        seeds, seed_metrics = algo.train_seeds(algo.init_seeds(jax.vmap(jax.random.key)(jnp.asarray([3, 4]))), 1)
        assert eq.float64_enabled() and single.params["policy" if name == "tesp" else "head"] is not None
    row = jax.tree.map(lambda x: np.asarray(x)[1], seeds)
    # The run is the launcher's: the same first record.
    np.testing.assert_allclose(float(single_metrics["train/loss"][0]), records(base / "resumed")[0]["train/loss"],
                               rtol=eq.INPUT_RTOL)
    for key, value in single_metrics.items():
        if key not in POST_STEP_METRICS:
            np.testing.assert_allclose(np.asarray(seed_metrics[key])[1], np.asarray(value), rtol=eq.INPUT_RTOL,
                                       atol=eq.INPUT_RTOL, err_msg=key)
    # One Adam step: |Δθ| ≤ lr·|δg|/ε with |δg| ≤ INPUT_RTOL·‖g‖ (‖g‖: the logged gradient norm).
    atol = eq.adam_step_atol(config["learning_rate"], float(single_metrics["train/grad_norm"][0]))
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
