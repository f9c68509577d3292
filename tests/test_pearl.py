"""PEARL: the context posterior against closed forms, the critic targets' terminal/truncation rules, the encoder's
data, and the launcher on a user-written family (trains, meta-tests, resumes bit-identically with both buffers,
compiles once); slow: N seeds equal their single runs, and a short learning run on the sparse point robot."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import algos, envs, networks, replay
from metarl_jax.algos import pearl, pearl_context
from metarl_jax.collector import Transition
from tests import equivalence as eq
from tests.bandit import LinearGaussianBandit
from tests.test_launcher import keep_built_algorithms, last_record, records, restore_params, train_main

SMOKE = algos.preset("pearl", "smoke")


# ---- the posterior q(z | c): closed forms -----------------------------------------------------------------


def test_product_of_gaussians_is_the_posterior_of_a_gaussian_mean_with_known_variance():
    """x_n ~ N(μ, s²) with a flat prior on μ: p(μ | x_1..N) = N(x̄, s²/N); with per-point variances s_n² the
    precision-weighted mean Σ x_n/s_n² / Σ 1/s_n² and variance 1/Σ 1/s_n²."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = rng.normal(0.7, 0.3, (2, 50, 3))  # two contexts, 50 transitions, latent 3
        q = pearl_context.product_of_gaussians(jnp.asarray(x), jnp.full(x.shape, 0.09))
        np.testing.assert_allclose(q.mean, x.mean(axis=1), rtol=1e-13)
        np.testing.assert_allclose(q.variance, np.full((2, 3), 0.09 / 50), rtol=1e-13)
        s2 = rng.uniform(0.01, 2.0, x.shape)
        q = pearl_context.product_of_gaussians(jnp.asarray(x), jnp.asarray(s2))
        np.testing.assert_allclose(q.variance, 1.0 / (1.0 / s2).sum(1), rtol=1e-13)
        np.testing.assert_allclose(q.mean, (x / s2).sum(1) / (1.0 / s2).sum(1), rtol=1e-13)
        # A mask leaves factors out: the masked product is the product of the kept ones; no factor: the prior.
        mask = (rng.uniform(size=x.shape[:2]) < 0.5).astype(np.float64)
        masked = pearl_context.product_of_gaussians(jnp.asarray(x), jnp.asarray(s2), jnp.asarray(mask))
        kept = pearl_context.product_of_gaussians(jnp.asarray(x[0][mask[0] > 0]), jnp.asarray(s2[0][mask[0] > 0]))
        np.testing.assert_allclose(masked.mean[0], kept.mean, rtol=1e-12)
        np.testing.assert_allclose(masked.variance[0], kept.variance, rtol=1e-12)
        empty = pearl_context.product_of_gaussians(jnp.asarray(x), jnp.asarray(s2), jnp.zeros(x.shape[:2]))
        np.testing.assert_array_equal(empty.mean, 0.0)
        np.testing.assert_array_equal(empty.variance, 1.0)


def test_the_encoder_posterior_is_permutation_invariant():
    with jax.enable_x64(True):
        encoder = pearl_context.make_context_encoder(5, 3, (16, 16))
        params = encoder.init(jax.random.key(0))
        context = jax.random.normal(jax.random.key(1), (4, 30, 5))
        perm = jax.random.permutation(jax.random.key(2), 30)
        q, q_perm = encoder.posterior(params, context), encoder.posterior(params, context[:, perm])
        # Sums of 30 positive precisions reordered: relative rounding ≤ 30 u.
        np.testing.assert_allclose(q_perm.mean, q.mean, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(q_perm.variance, q.variance, rtol=1e-13)
        assert not np.allclose(q.mean[0], q.mean[1])  # different contexts, different posteriors


def test_kl_to_the_prior_and_its_gradient_match_the_closed_form():
    """KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ (σ² + μ² − 1 − log σ²);  ∂/∂μ = μ,  ∂/∂σ² = ½ (1 − 1/σ²)."""
    with jax.enable_x64(True):
        mean = jnp.asarray([0.3, -1.2, 2.0])
        variance = jnp.asarray([0.5, 1.0, 0.04])
        kl = pearl_context.Posterior(mean, variance).kl_to_prior()
        expected = 0.5 * np.sum(np.asarray(variance) + np.asarray(mean) ** 2 - 1.0 - np.log(np.asarray(variance)))
        np.testing.assert_allclose(kl, expected, rtol=1e-14)
        # The same as networks' diagonal-Gaussian KL with log σ = ½ log σ² (an independent implementation).
        np.testing.assert_allclose(kl, networks.standard_normal_kl(mean, 0.5 * jnp.log(variance)), rtol=1e-13)
        grad_mean, grad_variance = jax.grad(lambda m, v: pearl_context.Posterior(m, v).kl_to_prior(),
                                            argnums=(0, 1))(mean, variance)
        np.testing.assert_allclose(grad_mean, mean, rtol=1e-14)
        np.testing.assert_allclose(grad_variance, 0.5 * (1.0 - 1.0 / variance), rtol=1e-14)


def test_z_is_reparameterised():
    """z = μ + σ ε: ∂z/∂μ = 1 and ∂z/∂σ² = ε / (2σ) for the ε drawn."""
    key = jax.random.key(3)
    mean, variance = jnp.asarray([0.5, -0.5]), jnp.asarray([0.25, 4.0])
    eps = (pearl_context.Posterior(mean, variance).sample(key) - mean) / jnp.sqrt(variance)
    d_mean = jax.jacobian(lambda m: pearl_context.Posterior(m, variance).sample(key))(mean)
    d_var = jax.jacobian(lambda v: pearl_context.Posterior(mean, v).sample(key))(variance)
    np.testing.assert_allclose(d_mean, np.eye(2), rtol=1e-6)
    np.testing.assert_allclose(np.diag(d_var), eps / (2 * jnp.sqrt(variance)), rtol=1e-5)


# ---- the critic's target -------------------------------------------------------------------------------


@pytest.mark.parametrize("critic_target", ["value", "twin_q"])
def test_the_target_does_not_bootstrap_at_a_terminal_step_and_does_at_a_truncated_one(critic_target):
    family = envs.make("point_semicircle")
    algo = algos.make("pearl", family, SMOKE.replace(critic_target=critic_target))
    params, _, target = algo.init_networks(jax.random.key(0))
    obs, next_obs = jnp.asarray([[0.1, 0.2], [0.1, 0.2]]), jnp.asarray([[0.3, 0.4], [0.3, 0.4]])
    batch = Transition(obs, jnp.zeros((2, 2)), jnp.asarray([-0.5, -0.5]), next_obs, jnp.asarray([1.0, 0.0]),
                       jnp.asarray([0.0, 1.0]), {})
    z = jnp.full((2, SMOKE.latent_size), 0.3)
    key = jax.random.key(1)
    y = jax.jit(algo.target)(target, params["actor"], batch, z, key)
    scale, gamma = SMOKE.reward_scale, SMOKE.discount
    np.testing.assert_allclose(y[0], scale * -0.5, rtol=1e-6)  # terminal: r only
    obs_z = jnp.concatenate([next_obs, z], -1)
    if critic_target == "value":
        bootstrap = algo.value.apply(target, obs_z)[1, 0]
    else:  # min_j Q̄_j(s′, ã′) − log π(ã′|s′), ã′ drawn with the key the target uses
        action, log_prob = algo.policy.apply(params["actor"], obs_z).sample_with_log_prob(key)
        bootstrap = jnp.min(algo.critic.apply(target, obs_z, action), -1)[1] - log_prob[1]
    assert abs(float(bootstrap)) > 1e-4
    np.testing.assert_allclose(y[1], scale * -0.5 + gamma * bootstrap, rtol=1e-5)  # truncated: from the true s′


@pytest.mark.parametrize("changes,field", [
    (dict(num_steps_prior=30), "num_steps_prior"),  # not a multiple of the horizon 20
    (dict(num_steps_prior=0, num_steps_posterior=0), "num_steps_posterior"),
    (dict(buffer_size=40), "buffer_size"),
])
def test_bad_configs_fail_early_naming_the_field(changes, field):
    with pytest.raises(ValueError, match=field):
        algos.make("pearl", envs.make("point_semicircle"), SMOKE.replace(**changes))


def test_per_task_buffer_helpers_address_one_task():
    buffer = replay.make_replay_buffer(4, num_tasks=3)

    @jax.jit  # one program, not one eager dispatch per scatter
    def fill(key):
        state = buffer.init({"x": jnp.zeros(())})
        state = replay.add_to_task(buffer, state, jnp.asarray(1), {"x": jnp.arange(1.0, 4.0)})
        wrapped = replay.add_to_task(buffer, state, jnp.asarray(1), {"x": jnp.asarray([7.0, 8.0])})  # wraps around
        cleared = replay.add_to_task(buffer, wrapped, jnp.asarray(1), {"x": jnp.asarray([5.0])}, clear=True)
        return wrapped, cleared, replay.sample_tasks(buffer, cleared, jnp.asarray([1, 1]), key, 6)

    wrapped, cleared, sample = fill(jax.random.key(0))
    np.testing.assert_array_equal(buffer.size(wrapped), [0, 4, 0])
    np.testing.assert_array_equal(wrapped.experience["x"][1, 0], [8.0, 2.0, 3.0, 7.0])
    np.testing.assert_array_equal(buffer.size(cleared), [0, 1, 0])
    np.testing.assert_array_equal(sample["x"], 5.0)  # only the one item held since the clear


# ---- through the launcher, on a user-written family (tests/bandit.py, defined outside the package) ----------

LAUNCH = ["--algo=pearl", "--env=linear_gaussian_bandit", "--preset=smoke", "--seed=0", "--progress=false",
          "--log_every=1", "--checkpoint_every=1"]


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def launched(tmp_path_factory, monkeypatch_module):
    """Two meta-iterations straight, and one + one resumed (with the state after the first kept)."""
    envs.register("linear_gaussian_bandit", LinearGaussianBandit, overwrite=True)
    built = keep_built_algorithms(monkeypatch_module)
    base = tmp_path_factory.mktemp("pearl_bandit")
    straight, resumed = base / "straight", base / "resumed"
    code, stderr = train_main([*LAUNCH, "--num_steps=2", f"--logdir={straight}"])
    assert code == 0, stderr
    code, stderr = train_main([*LAUNCH, "--num_steps=1", f"--logdir={resumed}"])
    assert code == 0, stderr
    trained = list(built)
    after_one = restore_params(resumed)
    code, stderr = train_main([*LAUNCH, "--num_steps=2", f"--logdir={resumed}"])
    assert code == 0, stderr
    return straight, resumed, after_one, trained + built[len(trained) + 1:]


def test_a_user_written_family_trains_and_meta_tests(launched, tmp_path):
    from experiments import evaluate

    straight, _, _, built = launched
    final = last_record(straight)
    cfg = SMOKE
    per_iteration = cfg.num_tasks_sample * (cfg.num_steps_prior + cfg.num_steps_posterior
                                            + cfg.num_extra_rl_steps_posterior)
    assert final["time/env_steps"] == cfg.num_train_tasks * cfg.num_initial_steps + 2 * per_iteration
    assert final["time/gradient_steps"] == 2 * cfg.num_train_steps_per_itr
    assert final["train/nonfinite_updates"] == 0 and np.isfinite(final["train/critic_loss"])
    assert {f"eval/return_step{k}" for k in range(cfg.eval_adaptation_steps + 1)} <= final.keys()
    assert [algo.trace_count for algo in built] == [1, 1, 1]  # no retracing: one compile per run
    code = evaluate.cli(["evaluate", f"--logdir={straight}", "--num_tasks=2"])
    assert code == 0
    curve = json.loads((straight / "eval" / "adaptation_curve.json").read_text())
    assert curve["x_label"] == "trajectories of context"
    assert len(curve["mean"]) == cfg.eval_adaptation_steps + 1 and np.all(np.isfinite(curve["mean"]))


def test_resume_is_bit_identical_with_both_buffers_in_the_checkpoint(launched):
    straight, resumed, _, _ = launched
    training = lambda r: {k: v for k, v in r.items() if not k.startswith(("time/wall", "eval/"))}  # noqa: E731
    assert [training(r) for r in records(straight)] == [training(r) for r in records(resumed)]
    assert last_record(straight) == last_record(resumed)
    a, b = restore_params(straight), restore_params(resumed)
    flat_a, flat_b = jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_flatten_with_path(b)[0]
    assert len(flat_a) == len(flat_b)
    for (path, x), (_, y) in zip(flat_a, flat_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))
    held = np.asarray(a.extras["buffers"]["replay"].current_index)
    assert np.all(held >= SMOKE.num_initial_steps)  # real, checkpointed buffers


def test_the_extra_posterior_steps_never_reach_the_encoder_buffer(launched):
    """After one iteration, per task: the replay holds the initial steps then, per collection, prior | posterior |
    extra; the encoder buffer holds exactly the last collection's prior and posterior steps (cleared before it)."""
    _, _, ts, _ = launched
    cfg = SMOKE
    encoder_part = cfg.num_steps_prior + cfg.num_steps_posterior
    collection = encoder_part + cfg.num_extra_rl_steps_posterior
    rl, enc = ts.extras["buffers"]["replay"], ts.extras["buffers"]["encoder"]
    size = lambda b: np.where(b.is_full, b.experience.action.shape[2], b.current_index)  # noqa: E731
    rl_size, enc_size = size(rl), size(enc)
    rl_actions, enc_actions = np.asarray(rl.experience.action)[:, 0], np.asarray(enc.experience.action)[:, 0]
    sampled = 0
    for task in range(cfg.num_train_tasks):
        if rl_size[task] == cfg.num_initial_steps:  # not sampled: E_i still holds the initial steps
            assert enc_size[task] == cfg.num_initial_steps
            np.testing.assert_array_equal(enc_actions[task, :enc_size[task]], rl_actions[task, :enc_size[task]])
            continue
        sampled += (rl_size[task] - cfg.num_initial_steps) // collection
        assert (rl_size[task] - cfg.num_initial_steps) % collection == 0
        assert enc_size[task] == encoder_part
        last = rl_size[task] - collection
        np.testing.assert_array_equal(enc_actions[task, :encoder_part], rl_actions[task, last:last + encoder_part])
        extra = rl_actions[task, last + encoder_part:rl_size[task]]
        assert not np.any(np.isin(extra, enc_actions[task]))  # continuous actions: no extra step in E_i
    assert sampled == cfg.num_tasks_sample


# ---- slow: N seeds, and learning on the sparse point robot -------------------------------------------------


@pytest.mark.slow
def test_num_seeds_each_seed_equals_its_single_seed_run(launched, tmp_path):
    """One iteration with one gradient step: the collections and buffers come before any Adam step (INPUT_RTOL in
    float64), the parameters after one Adam step agree to adam_step_atol with the logged gradient norms."""
    args = [*LAUNCH, "--override=num_train_steps_per_itr=1", "--num_steps=1"]
    with jax.enable_x64(True):
        code, stderr = train_main([*args, "--seed=3", "--num_seeds=2", f"--logdir={tmp_path / 'seeds'}"])
        assert code == 0, stderr
        code, stderr = train_main([*args, "--seed=4", f"--logdir={tmp_path / 'single'}"])
        assert code == 0, stderr
        stacked, single = restore_params(tmp_path / "seeds"), restore_params(tmp_path / "single")
    alone = last_record(tmp_path / "single")
    second = last_record(tmp_path / "seeds" / "seeds" / "seed_4")
    for key in ("time/env_steps", "train/buffer_size", "train/return", "train/critic_loss", "train/kl"):
        np.testing.assert_allclose(second[key], alone[key], rtol=1e-5, err_msg=key)  # float32 metrics
    row = jax.tree.map(lambda x: x[1], stacked)
    for name in ("replay", "encoder"):
        for x, y in zip(jax.tree.leaves(row.extras["buffers"][name]), jax.tree.leaves(single.extras["buffers"][name])):
            np.testing.assert_allclose(np.asarray(x, float), np.asarray(y, float), rtol=eq.INPUT_RTOL, atol=1e-14)
    norms = {"critic": alone["train/critic_grad_norm"], "encoder": alone["train/critic_grad_norm"],
             "actor": alone["train/actor_grad_norm"], "value": alone["train/value_grad_norm"]}
    for name, norm in norms.items():
        atol = eq.adam_step_atol(SMOKE.qf_lr, norm)
        for x, y in zip(jax.tree.leaves(row.params[name]), jax.tree.leaves(single.params[name])):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol, err_msg=name)


LEARNING = dict(hidden_sizes=(64, 64, 64), encoder_hidden_sizes=(64, 64, 64), num_tasks_sample=5,
                num_steps_prior=100, num_steps_posterior=400, num_train_steps_per_itr=200, meta_batch=8,
                batch_size=128, embedding_batch_size=256, buffer_size=20000)


@pytest.mark.slow
def test_short_run_on_the_sparse_point_robot_adapts_from_context():
    """After a few trajectories of context the sparse meta-test return exceeds that of the first (z ~ prior)."""
    family = envs.make("point_semicircle")
    cfg = algos.preset("pearl", "point_semicircle").replace(**LEARNING)
    algo = algos.make("pearl", family, cfg)
    ts, _ = algo.train(algo.init(jax.random.key(0)), 10)
    curve = algo.evaluate(ts, family.task_set("val", 20), jax.random.key(1))
    posterior = curve.mean[cfg.num_exp_traj_eval:]
    assert np.mean(posterior) > curve.mean[0] + 0.2, curve.mean
    assert isinstance(algo, pearl.PEARL) and int(ts.nonfinite_updates) == 0
