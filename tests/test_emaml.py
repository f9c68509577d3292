"""E-MAML: λ = 0 is MAML; the exploration term's gradient by hand; TRPO and PPO both optimise it;
no retracing. Its expectation on the bandit (the missing score term) is in tests/test_gradient_meta.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from metarl_jax import algos, envs, estimators
from metarl_jax.algos import emaml, maml
from metarl_jax.rollout import score

TINY = dict(hidden_sizes=(8,), meta_batch_size=3, episodes_per_task=4)
HORIZON = 10
WEIGHT = 0.7


@pytest.fixture(scope="module")
def corner():
    return envs.make("point_corner", episode_length=HORIZON)


def _pair(corner, weight, **changes):
    """E-MAML with exploration weight ``weight`` and MAML with the same remaining fields."""
    config = algos.preset("emaml", "smoke").replace(**TINY, exploration_weight=weight, **changes)
    shared = {k: v for k, v in config.to_dict().items() if not k.startswith("exploration_")}
    return algos.make("emaml", corner, config), algos.make("maml", corner, maml.Config.from_dict(shared))


@pytest.fixture(scope="module")
def collected(corner):
    explorer, plain = _pair(corner, WEIGHT)
    params = explorer.init(jax.random.key(3)).params
    tasks = corner.sample_tasks(jax.random.key(4), TINY["meta_batch_size"])
    keys = jax.random.split(jax.random.key(5), TINY["meta_batch_size"])
    inner, post, _ = jax.jit(jax.vmap(plain.sample_adaptation, in_axes=(None, 0, 0)))(params, tasks, keys)
    return params, inner, post


def _loss_gradient(algo, params, inner, post):
    def loss(p):
        o = algo.meta_objective(p, inner, post)
        return -estimators.importance_surrogate(o.log_ratio, o.advantages, o.mask) + o.penalty

    return ravel_pytree(jax.jit(jax.grad(loss))(params))[0]


def test_zero_exploration_weight_is_maml(corner, collected):
    params, inner, post = collected
    explorer, plain = _pair(corner, 0.0)
    np.testing.assert_allclose(_loss_gradient(explorer, params, inner, post),
                               _loss_gradient(plain, params, inner, post), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("baseline", ["normalized", "leave_one_out"])
def test_exploration_gradient_is_the_score_of_the_pre_update_batch(corner, collected, baseline):
    """E-MAML − MAML = −λ (1/N) Σ_i R̂'_i ∇ mean_{D_i} log π_θ, R̂' normalised over the meta-batch's rewards
    or minus the other tasks' mean."""
    params, inner, post = collected
    explorer, plain = _pair(corner, WEIGHT, exploration_baseline=baseline)
    difference = _loss_gradient(explorer, params, inner, post) - _loss_gradient(plain, params, inner, post)

    rewards, mask = np.asarray(post[0].rewards), np.asarray(post[0].mask)
    valid = rewards[mask > 0]
    per_task = np.array([rewards[i][mask[i] > 0].mean() for i in range(len(rewards))])
    if baseline == "normalized":
        adjusted = (per_task - valid.mean()) / (valid.std() + 1e-8)
    else:
        adjusted = np.array([per_task[i] - np.delete(per_task, i).mean() for i in range(len(per_task))])
    pre = jax.tree.map(lambda x: x[:, 0], inner[0])
    flat, unravel = ravel_pytree(params)
    score_per_task = jax.jit(jax.jacrev(lambda f: jax.vmap(
        lambda t: estimators.masked_mean(score(plain.policy, unravel(f), t)[0], t.mask))(pre)))(flat)
    by_hand = -WEIGHT * np.mean(adjusted[:, None] * np.asarray(score_per_task), axis=0)
    assert np.linalg.norm(by_hand) > 1e-3
    np.testing.assert_allclose(difference, by_hand, rtol=1e-3, atol=1e-5 * np.abs(by_hand).max())


@pytest.mark.parametrize("optimizer", ["trpo", "ppo"])
def test_trpo_and_ppo_optimise_the_exploration_term(corner, collected, optimizer):
    params, inner, post = collected
    explorer, plain = _pair(corner, WEIGHT, optimizer=optimizer, ppo_epochs=2)

    @jax.jit
    def updates(params):
        results = [algo.optimizer.update(lambda p, a=algo: a.meta_objective(p, inner, post), params,
                                         algo.optimizer.init(params)) for algo in (explorer, plain)]
        return results, explorer.exploration_objective(params, inner, post)

    ((new_explorer, _, info_explorer), (new_plain, _, info_plain)), exploration = updates(params)
    # The loss both optimisers minimise is MAML's minus the exploration objective.
    np.testing.assert_allclose(info_explorer["loss"] - info_plain["loss"], -exploration, rtol=1e-4, atol=1e-6)
    assert abs(float(exploration)) > 1e-5  # normalised R̂' has mean 0 over tasks: a covariance, small
    assert float(jnp.linalg.norm(ravel_pytree(new_explorer)[0] - ravel_pytree(new_plain)[0])) > 1e-6


def test_defaults_and_validation():
    config = emaml.Config()
    assert (config.hidden_sizes, config.activation, config.fast_lr, config.optimizer) == ((64, 64), "tanh", 0.1,
                                                                                          "trpo")
    assert (config.inner_estimator, config.exploration_weight, config.exploration_baseline) == ("vpg", 1.0,
                                                                                               "normalized")
    assert set(algos.presets("emaml")) >= {"paper", "point_corner", "point_semicircle", "wheeled", "ant_goal",
                                           "block_push", "smoke"}
    with pytest.raises(ValueError, match="exploration_weight"):
        emaml.Config(exploration_weight=-0.1)
    with pytest.raises(ValueError, match="exploration_baseline"):
        emaml.Config(exploration_baseline="episode_mean")
    assert emaml.Config(exploration_baseline="leave_one_out").exploration_baseline == "leave_one_out"


def test_emaml_trains_as_one_program(corner):
    algo = algos.make("emaml", corner, algos.preset("emaml", "smoke").replace(**TINY))
    ts = algo.init(jax.random.key(0))
    ts, _ = algo.train(ts, 2)
    ts, metrics = algo.train(ts, 2)
    assert algo.trace_count == 1
    assert int(ts.step) == 4
    assert all(np.all(np.isfinite(np.asarray(v))) for v in metrics.values())
    assert "train/step_accepted" in metrics  # TRPO by default
