"""MAME through the launchers, in this process: bit-identical resume, the meta-test curve file, and the
exploration-trajectory figure with μ_φ's episodes next to the adapted π_{θ,z'}'s."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from tests.test_figures import evaluate_main, figures_main, load
from tests.test_launcher import last_record, restore_params, train_main

HORIZON, EVAL_TASKS, EVAL_EPISODES = 5, 3, 2
TINY = [
    "--algo=mame", "--env=point_corner", "--preset=smoke", "--seed=3", "--log_every=2", "--checkpoint_every=2",
    "--override=hidden_sizes=8", "--override=latent_size=3", "--override=meta_batch_size=2",
    "--override=episodes_per_task=2", f"--override=eval_num_tasks={EVAL_TASKS}",
    f"--override=eval_episodes_per_task={EVAL_EPISODES}", "--override=train_reward=sparse",
    "--override=eval_reward=sparse", f"--env_kwarg=episode_length={HORIZON}", "--progress=false",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run A: 4 steps straight. Run B: 2 steps, then the same command resumed to 4."""
    base = tmp_path_factory.mktemp("mame_runs")
    straight, resumed = base / "straight", base / "resumed"
    for logdir, steps in ((straight, 4), (resumed, 2), (resumed, 4)):
        code, stderr = train_main([*TINY, f"--num_steps={steps}", f"--logdir={logdir}"])
        assert code == 0, stderr
    assert "resuming" in stderr
    return straight, resumed


def test_resume_is_bit_identical(runs):
    straight, resumed = runs
    record = last_record(straight)
    assert record["step"] == 4 and "eval/return_step1" in record and "adapt/latent_norm" in record
    assert record == last_record(resumed)
    a, b = restore_params(straight), restore_params(resumed)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert set(a.params) == {"policy", "explorer", "model"}


def test_evaluate_and_the_exploration_trajectory_figure(runs, tmp_path):
    straight, _ = runs
    code, stderr = evaluate_main(f"--logdir={straight}")
    assert code == 0, stderr
    curve = json.loads((straight / "eval" / "adaptation_curve.json").read_text())
    assert curve["algo"] == "mame" and curve["reward"] == "sparse" and len(curve["mean"]) == 2
    code, stderr = figures_main("trajectories", f"--logdirs={straight}", f"--num_episodes={EVAL_TASKS}",
                                "--num_goals=4", f"--out={tmp_path}")
    assert code == 0, stderr
    data = load(tmp_path / "trajectories.json")
    assert [p["policy"] for p in data["policies"]] == ["explorer", "adapted"]
    explored, adapted = (np.asarray(p["positions"]) for p in data["policies"])
    assert explored.shape == adapted.shape == (EVAL_TASKS, HORIZON, 2)
    assert np.all(np.isfinite(adapted)) and not np.allclose(explored, adapted)
    # The adapted policy ran with its task's z' ≠ 0, the explorer with no latent.
    latents = np.asarray(data["policies"][1]["latents"])
    assert latents.shape == (EVAL_TASKS, 3) and np.all(np.linalg.norm(latents, axis=-1) > 0)
    assert np.asarray(data["policies"][0]["latents"]).shape == (EVAL_TASKS, 0)
    assert (tmp_path / "trajectories.png").read_bytes()[:4] == b"\x89PNG"
