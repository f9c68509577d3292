"""Off-policy learners through the launcher: bit-identical resume with the replay buffer in the checkpoint,
and N seeds in one program equal to their single-seed runs (``tests/equivalence.py``)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from metarl_jax import envs
from tests import equivalence as eq
from tests import toy_control
from tests.test_launcher import last_record, records, restore_params, train_main

BASE = ["--env=toy_control", "--preset=smoke", "--progress=false", "--override=eval_num_tasks=2"]


@pytest.fixture(scope="module", autouse=True)
def toy_family_registered():
    envs.register("toy_control", toy_control.ToyControl, overwrite=True)


RESUME_RUNS = {
    "sac": ["--algo=sac"],
    # Two teacher copies with a baseline: every piece of Algorithm 1's state (student, targets, teacher, its Adam,
    # the buffer, the running environments of both copies, the normaliser) must survive the checkpoint.
    "teacher_ddpg": ["--algo=teacher_ddpg", "--override=teacher_copies=2", "--override=teacher_baseline=true"],
}


@pytest.fixture(scope="module", params=sorted(RESUME_RUNS))
def resume_runs(request, tmp_path_factory):
    """4 iterations straight, and 2 then resumed to 4 (chunks of 1, a checkpoint after each)."""
    base = tmp_path_factory.mktemp(f"resume_{request.param}")
    args = [*BASE, *RESUME_RUNS[request.param], "--seed=3", "--log_every=1", "--checkpoint_every=2"]
    straight, resumed = base / "straight", base / "resumed"
    for logdir, steps in ((straight, 4), (resumed, 2), (resumed, 4)):
        code, stderr = train_main([*args, f"--num_steps={steps}", f"--logdir={logdir}"])
        assert code == 0, stderr
    return request.param, straight, resumed


def test_resume_is_bit_identical_with_the_replay_buffer_in_the_checkpoint(resume_runs):
    name, straight, resumed = resume_runs
    assert [r["step"] for r in records(resumed)] == [1, 2, 3, 4]
    training = lambda r: {k: v for k, v in r.items() if not k.startswith(("time/wall", "eval/"))}  # noqa: E731
    assert [training(r) for r in records(straight)] == [training(r) for r in records(resumed)]
    assert last_record(straight) == last_record(resumed)  # the final meta-test too
    a, b = restore_params(straight), restore_params(resumed)
    flat_a, flat_b = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
    for (path, x), (_, y) in zip(flat_a, flat_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))
    experience = a.extras["experience"]
    held = int(np.asarray(experience.buffer.current_index))
    assert held > 0 and np.any(np.asarray(experience.buffer.experience.obs)[0, :held] != 0)  # a real buffer
    assert float(last_record(straight)["time/env_steps"]) == float(last_record(straight)["train/buffer_size"])
    if name == "teacher_ddpg":  # per cycle: D0 of 2 copies (2 × 10), D1 of both π′ and the student's rollout (3 × 20)
        assert last_record(straight)["time/env_steps"] == 4 * 2 * (2 * 10 + 3 * 20)


# ---- N seeds equal their single-seed runs -------------------------------------------------------------

# One iteration with exactly one Adam step per network (one cycle, one train step): the collection before it is
# a function of the common initial state, so it and every loss or gradient evaluated at the initial parameters
# agree to INPUT_RTOL; the parameters after the step to adam_step_atol (tests/equivalence.py).
EQUIVALENCE = ["--override=epoch_cycles=1", "--override=train_steps=1", "--override=rollout_steps=10",
               "--override=batch_size=8", "--log_every=1", "--num_steps=1"]
# Metrics of the state after the step (everything else is evaluated before it).
AFTER_STEP = {"train/alpha": "log_alpha"}


def parameter_tolerances(name: str, config: dict, metrics: dict) -> dict[str, float]:
    """adam_step_atol per parameter group, with the logged gradient norm bounding |g|."""
    if name == "ddpg":
        return {"actor": eq.adam_step_atol(config["actor_lr"], metrics["train/actor_grad_norm"]),
                "critic": eq.adam_step_atol(config["critic_lr"], metrics["train/critic_grad_norm"])}
    # SAC's temperature: the alpha loss α (Ĥ − H̄) is also its gradient in log α.
    return {"actor": eq.adam_step_atol(config["actor_lr"], metrics["train/actor_grad_norm"]),
            "critic": eq.adam_step_atol(config["critic_lr"], metrics["train/critic_grad_norm"]),
            "log_alpha": eq.adam_step_atol(config["alpha_lr"], abs(metrics["train/alpha_loss"]))}


@pytest.mark.parametrize("name", ["ddpg", "sac"])
def test_num_seeds_each_seed_equals_its_single_seed_run(name, tmp_path):
    args = [*BASE, f"--algo={name}", *EQUIVALENCE]
    with jax.enable_x64(True):
        code, stderr = train_main([*args, "--seed=3", "--num_seeds=2", f"--logdir={tmp_path / 'seeds'}"])
        assert code == 0, stderr
        code, stderr = train_main([*args, "--seed=4", f"--logdir={tmp_path / 'single'}"])
        assert code == 0, stderr
        stacked, single = restore_params(tmp_path / "seeds"), restore_params(tmp_path / "single")
    alone, second = last_record(tmp_path / "single"), last_record(tmp_path / "seeds" / "seeds" / "seed_4")
    config = json.loads((tmp_path / "single" / "config.json").read_text())["config"]
    tolerances = parameter_tolerances(name, config, alone)
    assert alone.keys() == second.keys()
    for key, value in alone.items():
        if key.startswith("eval/"):
            continue  # the meta-test runs the updated policy: downstream of the Adam step, not bounded here
        if key in AFTER_STEP:
            np.testing.assert_allclose(np.log(second[key]), np.log(value), rtol=0, atol=tolerances[AFTER_STEP[key]],
                                       err_msg=key)
        else:
            np.testing.assert_allclose(second[key], value, rtol=eq.INPUT_RTOL, atol=eq.INPUT_RTOL, err_msg=key)
    row = jax.tree.map(lambda x: np.asarray(x)[1], stacked)  # seed 4 is row 1 of the two-seed program
    for group, atol in tolerances.items():
        assert 0 < atol < 1e-4  # a bound that is not vacuous at these gradient norms
        for x, y in zip(jax.tree.leaves(single.params[group]), jax.tree.leaves(row.params[group])):
            np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=0, atol=atol, err_msg=group)
    np.testing.assert_array_equal(np.asarray(row.rng), np.asarray(single.rng))
    a, b = single.extras["experience"].buffer.experience, row.extras["experience"].buffer.experience
    eq.assert_close(a, b, eq.INPUT_RTOL, "replay buffer (collected before the step)")
