"""MAME: the DiCE-weighted inner loss and its φ-gradient in closed form, the eq. (9) rewards by hand and
the DiCE identity behind eqs. (6)-(7), only z adapting, one program, N seeds = single runs on a user's family,
learning on sparse point_corner, and every ablation tracing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from metarl_jax import algos, envs, estimators
from metarl_jax.algos import mame
from metarl_jax.algos import self_supervision as ss
from metarl_jax.rollout import Trajectory, score
from tests import equivalence as eq
from tests.bandit import LinearGaussianBandit

TINY = dict(hidden_sizes=(8,), latent_size=3, meta_batch_size=2, episodes_per_task=4, n_step=3)
HORIZON = 6


@pytest.fixture(scope="module")
def corner():
    return envs.make("point_corner", episode_length=HORIZON)


def tiny_algo(family, **changes):
    return algos.make("mame", family, algos.preset("mame", "smoke").replace(**{**TINY, **changes}))


# ---- the inner loss and its φ-gradient on a one-step problem (closed form) --------------------------------


def one_step_batch(algo, explorer_params, actions):
    """E one-step bandit episodes with the given actions, scored under the explorer (obs = 0)."""
    num = actions.shape[0]
    obs = jnp.zeros((num, 1, 1))
    batch = Trajectory(obs=obs, actions=actions[:, None, :], rewards=-(actions - 0.3) ** 2,
                       sparse_rewards=jnp.zeros((num, 1)), mask=jnp.ones((num, 1)), log_probs=jnp.zeros((num, 1)),
                       dist=None, latents=jnp.zeros((num, 0)), positions=jnp.zeros((num, 1, 2)))
    log_probs, dist = score(algo.explorer, explorer_params, batch)
    return batch._replace(log_probs=log_probs, dist=dist)


def test_dice_inner_loss_is_the_regression_loss_and_its_phi_gradient_the_score_function_form():
    """One step, μ_φ(a) = N(b, σ²) (obs 0: the mean is the output bias b): the DiCE-weighted loss equals the
    plain regression loss, and d(gᵀ z')/dφ = −α mean_e ∇_φ log μ(a_e) gᵀ∇_z ℓ_e, with ∇_b log μ = (a − b)/σ²
    and ∇_{log σ} log μ = (a − b)²/σ² − 1."""
    algo = tiny_algo(LinearGaussianBandit(), target="reward", explorer_gradient="vanilla_dice")
    params = algo.init(jax.random.key(0)).params
    params["explorer"]["params"]["log_std"] = jnp.array([-0.4])
    actions = jnp.array([[0.9], [-0.5], [0.2], [1.7], [-1.1]])
    batch = one_step_batch(algo, params["explorer"], actions)
    data = algo.inner_data(batch, "dense")
    z0 = jnp.array([0.3, -0.2, 0.1])
    g = jnp.array([0.7, -1.3, 0.4])

    @jax.jit
    def compute(params):
        dice_loss = algo.inner_loss(params, z0, batch, data)
        plain_loss = jnp.mean(algo.per_step_losses(params, z0, batch, data))
        phi_grad = jax.grad(lambda explorer: g @ algo.adapt({**params, "explorer": explorer}, z0, batch, data))(
            params["explorer"])
        inner_products = jax.vmap(lambda e: g @ jax.grad(
            lambda z: algo.per_step_losses(params, z, batch, data)[e, 0])(z0))(jnp.arange(actions.shape[0]))
        return dice_loss, plain_loss, phi_grad, inner_products

    dice_loss, plain_loss, phi_grad, inner_products = compute(params)
    np.testing.assert_allclose(dice_loss, plain_loss, rtol=1e-6)
    mean = np.asarray(batch.dist.mean[:, 0, 0])
    np.testing.assert_allclose(mean, params["explorer"]["params"]["MLP_0"]["Dense_1"]["bias"][0], rtol=1e-6)
    variance = np.exp(2 * -0.4)
    a = np.asarray(actions[:, 0])
    alpha = algo.config.fast_lr
    weights = -alpha * np.asarray(inner_products) / len(a)
    expected_bias = np.sum(weights * (a - mean) / variance)
    expected_log_std = np.sum(weights * ((a - mean) ** 2 / variance - 1.0))
    got = phi_grad["params"]
    assert abs(expected_bias) > 1e-3 and abs(expected_log_std) > 1e-3
    np.testing.assert_allclose(got["MLP_0"]["Dense_1"]["bias"][0], expected_bias, rtol=1e-4)
    np.testing.assert_allclose(got["log_std"][0], expected_log_std, rtol=1e-4)
    # Without DiCE weights (the low-variance estimator) z' does not depend on φ at all.
    plain = tiny_algo(LinearGaussianBandit(), target="reward")
    no_dice = jax.grad(lambda explorer: g @ plain.adapt({**params, "explorer": explorer}, z0, batch, data))(
        params["explorer"])
    assert all(float(jnp.max(jnp.abs(x))) == 0.0 for x in jax.tree.leaves(no_dice))


# ---- eq. (9) and the DiCE identity on collected episodes ---------------------------------------------------


@pytest.fixture(scope="module")
def collected(corner):
    """One prepared meta-iteration of the tiny low-variance MAME (N-step target, T = 6 > N = 3)."""
    algo = tiny_algo(corner)
    ts = algo.init(jax.random.key(3))
    _, (batch, adv, returns), metrics = jax.jit(algo.prepare)(ts)
    rewards, outer_gradient = jax.jit(algo.explorer_rewards)(ts.params, batch)
    return algo, ts.params, batch, rewards, outer_gradient, metrics


def test_eq9_rewards_are_the_inner_product_of_the_outer_and_per_step_inner_gradients(collected):
    algo, params, batch, rewards, outer_gradient, metrics = collected
    explorer, inner_data, z_new, post, post_adv = batch
    alpha, z0 = algo.config.fast_lr, algo.initial_latent

    @jax.jit
    def by_hand():
        def surrogate(latents):  # J: mean ρA over every task's post-update steps
            with_z = post._replace(latents=jnp.broadcast_to(latents[:, None, :], post.latents.shape))
            log_probs, _ = score(algo.policy, params["policy"], with_z)
            return estimators.masked_mean(jnp.exp(log_probs - post.log_probs) * post_adv, post.mask)

        g = jax.grad(surrogate)(z_new)
        jacobians = jax.vmap(lambda b, d: jax.jacrev(lambda z: algo.per_step_losses(params, z, b, d))(z0))(
            explorer, inner_data)  # ∇_z ℓ_{i,e,t}: [N, E, T, d]
        weights = inner_data[1]
        per_step = jnp.einsum("netd,nd->net", jacobians, g)
        return g, -alpha * per_step * weights / jnp.sum(weights, axis=(1, 2), keepdims=True)

    g, expected = by_hand()
    np.testing.assert_allclose(outer_gradient, g, rtol=1e-5, atol=1e-9)
    scale = float(np.abs(expected).max())
    assert scale > 1e-9
    np.testing.assert_allclose(rewards, expected, rtol=1e-4, atol=1e-5 * scale)
    # Σ_t r^μ_t = gᵀ (z' − z): each task's first-order gain from its inner step.
    np.testing.assert_allclose(np.sum(rewards, axis=(1, 2)), np.sum(g * (z_new - z0), -1), rtol=1e-4,
                               atol=1e-5 * scale)
    np.testing.assert_allclose(metrics["adapt/predicted_improvement"], np.mean(np.sum(g * (z_new - z0), -1)),
                               rtol=1e-4, atol=1e-5 * scale)


def test_vanilla_dice_phi_gradient_is_the_policy_gradient_with_eq9_rewards(corner, collected):
    """Eqs. (6)-(7): backpropagating J through z' with DiCE weights gives Σ ∇_φ log μ(a_t|s_t) Σ_{t'≥t} r^μ_t'."""
    algo, params, batch, rewards, _, _ = collected
    dice = tiny_algo(corner, explorer_gradient="vanilla_dice")
    explorer, inner_data, _, post, post_adv = batch

    @jax.jit
    def gradients():
        def through_z(explorer_params):
            p = {**params, "explorer": explorer_params}
            latents = jax.vmap(lambda b, d: dice.adapt(p, dice.initial_latent, b, d))(explorer, inner_data)
            return dice.post_update_surrogate(params["policy"], latents, post, post_adv)

        returns = estimators.discounted_cumsum(rewards, explorer.mask, 1.0)  # R^μ_t = Σ_{t'≥t} r^μ_t'

        def score_function(explorer_params):
            log_probs, _ = score(dice.explorer, explorer_params, explorer)
            return jnp.sum(log_probs * explorer.mask * returns)

        return jax.grad(through_z)(params["explorer"]), jax.grad(score_function)(params["explorer"])

    backprop, policy_gradient = (ravel_pytree(g)[0] for g in gradients())
    assert float(jnp.linalg.norm(policy_gradient)) > 1e-8
    np.testing.assert_allclose(backprop, policy_gradient, rtol=1e-3, atol=1e-4 * float(jnp.abs(policy_gradient).max()))


def test_only_z_adapts_and_the_post_update_policy_is_pi_theta_at_z_prime(collected):
    algo, params, batch, _, _, _ = collected
    explorer, _, z_new, post, _ = batch
    assert z_new.shape == (TINY["meta_batch_size"], TINY["latent_size"])
    assert float(jnp.min(jnp.linalg.norm(z_new, axis=-1))) > 0.0
    np.testing.assert_allclose(post.latents, jnp.broadcast_to(z_new[:, None], post.latents.shape))
    # The post-update episodes were sampled by π with the meta-parameters θ themselves (θ is not adapted).
    log_probs, _ = jax.jit(lambda p, t: score(algo.policy, p, t))(params["policy"], post)
    np.testing.assert_allclose(log_probs * post.mask, post.log_probs * post.mask, rtol=1e-5, atol=1e-5)
    explorer_log_probs, _ = jax.jit(lambda p, t: score(algo.explorer, p, t))(params["explorer"], explorer)
    np.testing.assert_allclose(explorer_log_probs, explorer.log_probs, rtol=1e-5, atol=1e-5)


def test_window_sums_and_targets():
    x = jnp.arange(1.0, 7.0)[None, :, None]  # one episode, T = 6, valid for 5 steps
    mask = jnp.array([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    np.testing.assert_allclose(ss.n_step_sum(x, mask, 3)[0, :, 0], [6, 9, 12, 9, 5, 0])
    np.testing.assert_allclose(ss.discounted_sum(x, mask, 0.5)[0, :, 0],
                               [1 + 1 + 0.75 + 0.5 + 5 / 16, 2 + 1.5 + 1 + 0.625, 3 + 2 + 1.25, 4 + 2.5, 5, 0])
    np.testing.assert_allclose(ss.window_mean(x, mask, "n_step_return", 3, 1.0)[0, :, 0], [2, 3, 4, 4.5, 5, 0])
    with pytest.raises(ValueError, match="n_step_return"):
        ss.window_sum(x, mask, "value", 3, 1.0)


# ---- training -----------------------------------------------------------------------------------------------

LEARNING = dict(hidden_sizes=(16, 16), latent_size=8, meta_batch_size=10, episodes_per_task=10,
                train_reward="sparse", eval_reward="sparse", eval_num_tasks=8, eval_episodes_per_task=10)


def test_mame_learns_on_sparse_point_corner_as_one_program():
    """80 iterations on ProMP's sparse corner task (horizon 20): the post-update sparse return rises and the
    meta-test inner step (explorer episodes -> z') raises π's return on held-out goals."""
    family = envs.make("point_corner", episode_length=20)
    algo = algos.make("mame", family, algos.preset("mame", "smoke").replace(**LEARNING))
    ts = algo.init(jax.random.key(0))
    ts, first = algo.train(ts, 20)
    for _ in range(2):
        ts, _ = algo.train(ts, 20)
    ts, last = algo.train(ts, 20)
    assert algo.trace_count == 1  # four calls, one trace
    assert int(ts.step) == 80 and int(ts.nonfinite_updates) == 0
    assert all(k.split("/")[0] in ("train", "adapt", "eval", "time") for k in last)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in last.values())
    post_first = float(np.mean(first["train/post_sparse_return"]))
    post_last = float(np.mean(last["train/post_sparse_return"]))
    assert post_last > post_first + 0.08, (post_first, post_last)
    curve = algo.evaluate(ts, family.task_set("val", 8), jax.random.key(7))
    assert curve.returns.shape == (8, 2)
    assert curve.mean[1] > curve.mean[0] + 0.08, curve.mean


def test_vmapped_seeds_equal_their_single_seed_runs_on_a_user_written_family():
    """A family defined outside the package (the bandit) trains, and 3 seeds as one program equal their
    single-seed runs: one meta-iteration in float64 with one Adam step (ppo_epochs=1); everything before
    the step to INPUT_RTOL, the parameters to Adam's bound lr·|δg|/ε with |δg| ≤ INPUT_RTOL·‖g‖₂
    (tests/equivalence.py; ‖g‖₂ is the step's own train/grad_norm). Metrics computed from the new
    parameters (KLs, inner losses) are functions of them and not compared separately."""
    with jax.enable_x64(True):
        algo = tiny_algo(LinearGaussianBandit(), meta_batch_size=4, episodes_per_task=8, ppo_epochs=1)
        keys = jax.random.split(jax.random.key(0), 3)
        stacked, metrics = algo.train_seeds(algo.init_seeds(keys), 1)
        assert metrics["train/post_return"].shape == (3, 1)
        assert all(np.all(np.isfinite(np.asarray(v))) for v in metrics.values())
        pre_solve = [k for k in metrics if k.startswith(("train/pre", "train/post", "time/"))] + [
            "train/loss", "train/grad_norm", "adapt/latent_norm", "adapt/predicted_improvement",
            "train/explorer_reward_rms", "train/policy_std", "train/explorer_std", "train/nonfinite_updates"]
        for seed, key in enumerate(keys):
            single, single_metrics = algo.train(algo.init(key), 1)
            row = jax.tree.map(lambda x, k=seed: x[k], stacked.params)
            atol = eq.adam_step_atol(algo.config.learning_rate, float(single_metrics["train/grad_norm"][0]))
            moved = 0.0
            for a, b, before in zip(jax.tree.leaves(single.params), jax.tree.leaves(row),
                                    jax.tree.leaves(algo.init(key).params), strict=True):
                np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=atol)
                moved = max(moved, float(np.abs(np.asarray(a) - np.asarray(before)).max()))
            assert moved > 1e2 * atol  # the step is far larger than the tolerance
            for k in pre_solve:
                np.testing.assert_allclose(np.asarray(metrics[k])[seed, 0], np.asarray(single_metrics[k])[0],
                                           rtol=eq.INPUT_RTOL, atol=eq.INPUT_RTOL, err_msg=k)


@pytest.mark.parametrize("changes", [dict(explorer_gradient="vanilla_dice"), dict(explorer_gradient="emaml_explorer"),
                                     dict(inner_loss="vpg_inner"), dict(target="reward"), dict(target="next_state"),
                                     dict(target="return", successor_features=False),
                                     dict(explorer_baseline="value_network"), dict(optimizer="vpg")])
def test_every_ablation_and_option_traces_a_train_step(corner, changes):
    algo = tiny_algo(corner, **changes)
    ts = jax.eval_shape(algo.init, jax.random.key(0))
    new_ts, metrics = jax.eval_shape(algo.train_step, ts)
    assert jax.tree.structure(new_ts.params) == jax.tree.structure(ts.params)
    assert "train/post_sparse_return" in metrics and "adapt/latent_norm" in metrics
    assert ("explorer_value" in ts.params) == (changes.get("explorer_baseline") == "value_network")


def test_defaults_are_the_paper_settings_and_bad_values_name_the_field():
    config = mame.Config()
    assert (config.hidden_sizes, config.activation, config.latent_size, config.n_step) == ((64, 64), "tanh", 32, 15)
    assert (config.fast_lr, config.meta_batch_size, config.episodes_per_task) == (0.1, 40, 20)
    assert (config.optimizer, config.learning_rate, config.ppo_clip, config.ppo_epochs) == ("ppo", 7e-4, 0.2, 5)
    assert (config.discount, config.gae_lambda, config.target, config.explorer_gradient) == (
        0.99, 1.0, "n_step_return", "low_variance")
    assert set(algos.presets("mame")) >= {"paper", "point_corner", "cheetah_vel", "cheetah_dir", "ant_dir",
                                          "walker2d_dir", "hopper_rand_params", "walker2d_rand_params", "smoke"}
    with pytest.raises(ValueError, match="target"):
        mame.Config(target="value")
    with pytest.raises(ValueError, match="explorer_gradient"):
        mame.Config(explorer_gradient="dice")
    with pytest.raises(ValueError, match="explorer_baseline"):
        mame.Config(explorer_baseline="value_network", explorer_gradient="vanilla_dice")
    with pytest.raises(ValueError, match="optimizer"):
        mame.Config(optimizer="trpo")
