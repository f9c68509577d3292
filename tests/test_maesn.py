"""MAESN and LatentSpace: latent gradients, prior KL, step-0 identities, no retracing, per-task latents, learning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import algos, envs, estimators
from metarl_jax.algos import maesn
from metarl_jax.networks import DiagGaussian
from tests.bandit import LinearGaussianBandit

# One small model serves every test, so that each program compiles once per file.
TINY = dict(hidden_sizes=(16,), meta_batch_size=8, episodes_per_task=10, num_train_tasks=16, eval_num_tasks=8,
            eval_episodes_per_task=10, eval_adaptation_steps=3)
HORIZON = 15


@pytest.fixture(scope="module")
def corner():
    return envs.make("point_corner", episode_length=HORIZON)


@pytest.fixture(scope="module")
def tiny_maesn(corner):
    return algos.make("maesn", corner, algos.preset("maesn", "smoke").replace(**TINY))


@pytest.fixture(scope="module")
def collected(tiny_maesn):
    """One meta-batch of pre/post-update data and the objective at the sampling parameters."""
    algo = tiny_maesn
    params = algo.init(jax.random.key(3)).params

    @jax.jit
    def collect_and_score(params, key):
        batch = algo.collect(params, key)
        return batch, algo.meta_objective(params, *batch)

    batch, objective = collect_and_score(params, jax.random.key(4))
    return params, batch, objective


# ----------------------------------------------------------------------------- latent gradient


def test_latent_surrogate_matches_closed_form_gradient_and_hessian():
    """f(z) = −‖z − c‖², z ~ N(μ, σ²): E f = −‖μ − c‖² − Σσ²,
    ∇_μ = −2(μ − c), ∇_{log σ} = −2σ², ∇²_μ = −2I (the DiCE Hessian's ∇ℓ∇ℓᵀ f + ∇²ℓ f term)."""
    mean, log_std, centre = jnp.array([0.3, -0.5]), jnp.array([0.2, -0.4]), jnp.array([1.0, 0.5])
    num = 400_000

    @jax.jit
    def estimates(mean, log_std):
        z = jax.lax.stop_gradient(mean + jnp.exp(log_std) * jax.random.normal(jax.random.key(0), (num, 2)))
        reward = -jnp.sum((z - centre) ** 2, axis=-1)
        adv = (reward - jnp.mean(reward))[:, None]  # one step per episode; a constant baseline

        def surrogate(mean, log_std):
            return maesn.latent_surrogate(DiagGaussian(mean, log_std).log_prob(z), jnp.zeros((num, 1)), adv,
                                          jnp.ones((num, 1)))

        return (surrogate(mean, log_std), jax.grad(surrogate, argnums=(0, 1))(mean, log_std),
                jax.hessian(surrogate)(mean, log_std))

    value, (grad_mean, grad_log_std), hessian = estimates(mean, log_std)
    np.testing.assert_allclose(grad_mean, -2 * (mean - centre), atol=0.03)
    np.testing.assert_allclose(grad_log_std, -2 * jnp.exp(2 * log_std), atol=0.03)
    np.testing.assert_allclose(hessian, -2 * jnp.eye(2), atol=0.1)
    assert float(value) == 0.0  # DiCE: the value is 0


def test_latent_surrogate_first_order_is_reinforce_with_the_first_step_advantage():
    """∇_{μ,logσ} S = mean_e ∇log N(z_e; μ, σ) A_{e,0}, whatever the later advantages and actions."""
    keys = jax.random.split(jax.random.key(1), 4)
    z = jax.random.normal(keys[0], (6, 2))
    adv = jax.random.normal(keys[1], (6, 5))
    action_log_probs = jax.random.normal(keys[2], (6, 5))
    mask = jnp.ones((6, 5)).at[0, 3:].set(0.0)
    latent = DiagGaussian(jnp.array([0.1, -0.2]), jnp.array([0.3, 0.0]))
    grads = jax.jit(jax.grad(lambda q: maesn.latent_surrogate(q.log_prob(z), action_log_probs, adv, mask)))(latent)
    reinforce = jax.jit(jax.grad(lambda q: jnp.mean(q.log_prob(z) * adv[:, 0])))(latent)
    np.testing.assert_allclose(grads.mean, reinforce.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads.log_std, reinforce.log_std, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("outer_latent_gradient", maesn.OUTER_LATENT_GRADIENTS)
def test_meta_gradient_is_exact_on_a_latent_gaussian_bandit(outer_latent_gradient):
    """One-step bandit, linear policy a ~ N(w z + b, 1), z ~ N(μ, s²), r = −(a − g)².

    J(μ, log s, w, b) = −(wμ + b − g)² − w²s² − 1, and the inner step gives
    μ' = μ + α ĝ_μ, log s' = log s + α ĝ_s with ĝ_μ = −2w(wμ + b − g), ĝ_s = −2w²s².
    The exact gradient of J' = J(μ', log s', w, b) includes the second-order terms
    dμ'/dμ = 1 − 2αw², d log s'/d log s = 1 − 4αw²s² and, for w, the cross terms
    α ∂ĝ/∂w that only the DiCE latent surrogate (∇ℓ ∇log πᵀ A) provides.
    """
    w, b, mu, alpha, batch = 1.0, 0.0, -0.3, 0.1, 200_000
    family = LinearGaussianBandit()
    config = maesn.Config(hidden_sizes=(), latent_size=1, num_train_tasks=1, meta_batch_size=1,
                          episodes_per_task=batch, fast_lr=alpha, normalize_advantages=False,
                          outer_latent_gradient=outer_latent_gradient)
    algo = algos.make("maesn", family, config)
    params = algo.init(jax.random.key(0)).params
    params["policy"]["params"]["policy"]["MLP_0"]["Dense_0"] = {"kernel": jnp.array([[0.0], [w]]),
                                                                "bias": jnp.array([b])}
    params["latent_mean"] = jnp.full((1, 1), mu)
    goal = float(family.task_set("train", 1)[0])

    @jax.jit
    def estimate(params, key):
        batch = algo.collect(params, key)

        def surrogate(p):
            o = algo.meta_objective(p, *batch)
            return estimators.importance_surrogate(o.log_ratio, o.advantages, o.mask)

        return jax.grad(surrogate)(params)

    grads = estimate(params, jax.random.key(1))
    m = w * mu + b - goal
    g_mu, g_s = -2 * w * m, -2 * w**2
    mu_adapted, var_adapted = mu + alpha * g_mu, np.exp(2 * alpha * g_s)
    m_adapted = w * mu_adapted + b - goal
    d_mu_adapted, d_s_adapted = -2 * w * m_adapted, -2 * w**2 * var_adapted  # ∂J'/∂μ', ∂J'/∂log s'
    expected = {
        "mu": d_mu_adapted * (1 - 2 * alpha * w**2),
        "log_s": d_s_adapted * (1 - 4 * alpha * w**2),
        "alpha_mu": d_mu_adapted * g_mu,
        "alpha_s": d_s_adapted * g_s,
        "w": (-2 * mu_adapted * m_adapted - 2 * w * var_adapted + d_mu_adapted * alpha * -2 * (2 * w * mu + b - goal)
              + d_s_adapted * alpha * -4 * w),
    }
    dense = grads["policy"]["params"]["policy"]["MLP_0"]["Dense_0"]
    estimated = {"mu": grads["latent_mean"][0, 0], "log_s": grads["latent_log_std"][0, 0],
                 "alpha_mu": grads["step_size"]["mean"][0], "alpha_s": grads["step_size"]["log_std"][0],
                 "w": dense["kernel"][1, 0]}
    for name, value in expected.items():  # estimator noise at this batch size: ≈ 1.5 % (seeds 1-5 checked)
        np.testing.assert_allclose(float(estimated[name]), value, rtol=0.04, atol=0.03, err_msg=name)
    # Dropping the cross terms would give ∂J'/∂w alone, far from the exact value.
    assert abs(float(estimated["w"]) - (-2 * mu_adapted * m_adapted - 2 * w * var_adapted)) > 0.4


# ----------------------------------------------------------------------------- objective


def test_prior_kl_matches_closed_form_and_enters_the_penalty(tiny_maesn, collected):
    mean, log_std = jnp.array([[0.5, -1.0], [0.0, 0.0]]), jnp.array([[0.3, -0.2], [0.0, 0.0]])
    closed_form = 0.5 * jnp.sum(jnp.exp(2 * log_std) + mean**2 - 1.0 - 2 * log_std, axis=-1)
    np.testing.assert_allclose(maesn.prior_kl(DiagGaussian(mean, log_std)), closed_form, rtol=1e-6)
    assert float(closed_form[1]) == 0.0

    params, (task_indices, *_), objective = collected
    mu, log_sigma = params["latent_mean"][task_indices], params["latent_log_std"][task_indices]
    expected = tiny_maesn.config.kl_weight * jnp.mean(
        0.5 * jnp.sum(jnp.exp(2 * log_sigma) + mu**2 - 1.0 - 2 * log_sigma, axis=-1))
    np.testing.assert_allclose(objective.penalty, expected, rtol=1e-5)


def test_likelihood_ratio_is_one_and_surrogate_consistent_at_step_zero(collected):
    _, (task_indices, pre, post, _), objective = collected
    assert objective.log_ratio.shape == post[1].shape == (8, 10, HORIZON)
    np.testing.assert_allclose(objective.log_ratio, 0.0, atol=1e-4)
    np.testing.assert_allclose(objective.kl, 0.0, atol=1e-6)
    loss = -estimators.importance_surrogate(objective.log_ratio, objective.advantages, objective.mask)
    expected = -estimators.masked_mean(post[1], post[0].mask)
    np.testing.assert_allclose(loss, expected, atol=1e-5)
    # The post-update latents were drawn from the adapted q'_i: they differ from the pre-update ones.
    assert not np.allclose(np.asarray(post[0].latents), np.asarray(pre[0].latents))


def test_meta_gradient_reaches_every_meta_parameter(tiny_maesn, collected):
    params, batch, _ = collected

    def surrogate(p):
        o = tiny_maesn.meta_objective(p, *batch)
        return estimators.importance_surrogate(o.log_ratio, o.advantages, o.mask)

    grads = jax.jit(jax.grad(surrogate))(params)
    task_indices = np.asarray(batch[0])
    for name in ("latent_mean", "latent_log_std"):
        assert np.all(np.any(np.asarray(grads[name])[task_indices] != 0.0, axis=-1)), name
    assert np.all(np.asarray(grads["step_size"]["mean"]) != 0.0)
    assert np.all(np.asarray(grads["step_size"]["log_std"]) != 0.0)
    assert any(bool(jnp.any(g != 0.0)) for g in jax.tree.leaves(grads["policy"]))


# ----------------------------------------------------------------------------- training


def test_train_step_compiles_once_and_moves_only_sampled_latents(tiny_maesn):
    algo = tiny_maesn
    ts0 = algo.init(jax.random.key(0))
    assert ts0.params["latent_mean"].shape == ts0.params["latent_log_std"].shape == (16, 2)
    ts = ts0
    for _ in range(3):
        previous = ts
        ts, metrics = algo.train_step(ts)
    assert algo.trace_count == 1
    assert int(ts.step) == 3
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert all(k.split("/")[0] in ("train", "adapt", "eval", "time") for k in metrics)
    assert float(metrics["train/step_accepted"]) == 1.0
    # TRPO moves along F⁻¹g; unsampled tasks have zero gradient and zero Fisher rows, so they stay put.
    changed = np.any(np.asarray(ts.params["latent_mean"] != previous.params["latent_mean"]), axis=-1)
    assert 0 < changed.sum() <= algo.config.meta_batch_size, changed
    unchanged_std = np.all(np.asarray(ts.params["latent_log_std"] == previous.params["latent_log_std"]), axis=-1)
    assert np.all(unchanged_std[~changed])


def test_maesn_learns_to_adapt_its_latents_with_the_sparse_reward(tiny_maesn, corner):
    """After 60 meta-iterations (dense reward), VPG on (μ, log σ) from the prior with the SPARSE reward
    raises the held-out return; the learned step sizes are the base test step."""
    algo = tiny_maesn
    ts = algo.init(jax.random.key(0))
    np.testing.assert_allclose(algo.eval_step_sizes(ts.params).mean, algo.config.fast_lr)
    for _ in range(60):
        ts, metrics = algo.train_step(ts)
    assert float(metrics["train/post_return"]) > float(metrics["train/pre_return"])
    curve = algo.evaluate(ts, corner.task_set("val", 8), jax.random.key(7))
    assert curve.returns.shape == (8, algo.config.eval_adaptation_steps + 1)
    assert np.all(np.isfinite(curve.returns))
    assert curve.mean[-1] > curve.mean[0] + 0.2, curve.mean


def test_latent_space_has_an_identity_inner_step_and_evaluates(corner):
    config = algos.preset("latent_space", "smoke").replace(**TINY)
    assert config.fast_lr == 0.0 and not config.learn_step_sizes and config.eval_lr == 1.0
    algo = algos.make("latent_space", corner, config)
    ts0 = algo.init(jax.random.key(0))
    assert "step_size" not in ts0.params
    ts, _ = algo.train(ts0, 2)
    ts, metrics = algo.train(ts, 2)
    assert algo.trace_count == 1  # the scanned train traces its step once
    assert int(ts.step) == 4
    np.testing.assert_array_equal(metrics["train/pre_return"], metrics["train/post_return"])
    np.testing.assert_array_equal(metrics["adapt/latent_mean_shift"], 0.0)
    assert float(metrics["train/step_accepted"].mean()) > 0.5
    moved = [bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(ts.params), jax.tree.leaves(ts0.params))]
    assert all(moved)  # θ, μ and log σ all move
    curve = algo.evaluate(ts, corner.task_set("val", 8), jax.random.key(1))
    assert curve.returns.shape == (8, config.eval_adaptation_steps + 1)
    assert np.all(np.isfinite(curve.returns))


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("algo_name", ["maesn", "latent_space"])
def test_every_preset_validates(algo_name):
    presets = algos.presets(algo_name)
    assert {"paper", "smoke", "point_corner", "point_semicircle", "wheeled", "ant_goal", "block_push"} <= set(presets)
    config_class = algos.config_class(algo_name)
    for name, config in presets.items():
        assert isinstance(config, config_class), name
        assert type(config).from_dict(config.to_dict()) == config
    paper = presets["paper"]
    assert (paper.latent_size, paper.meta_batch_size, paper.num_train_tasks, paper.kl_weight) == (2, 20, 100, 0.1)
    assert paper.eval_reward == "sparse" and paper.eval_schedule == "halving" and paper.eval_num_tasks == 30


@pytest.mark.parametrize("field,value", [
    ("latent_size", 0), ("num_train_tasks", 0), ("fast_lr", -0.5), ("kl_weight", -1.0),
    ("eval_lr", 0.0), ("outer_latent_gradient", "pathwise"), ("eval_schedule", "linear"),
])
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=repr(field)):
        maesn.Config(**{field: value})


def test_cross_field_checks_name_the_fields():
    with pytest.raises(ValueError, match="meta_batch_size.*num_train_tasks"):
        maesn.Config(meta_batch_size=20, num_train_tasks=10)
    with pytest.raises(ValueError, match="fast_lr"):
        maesn.LatentSpaceConfig(fast_lr=0.5)
    with pytest.raises(ValueError, match="config must be"):
        algos.make("latent_space", envs.make("point_corner"), maesn.Config())
