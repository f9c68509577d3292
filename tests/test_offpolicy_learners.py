"""DDPG, SAC and Xu et al.'s teacher against hand computations (learning runs: test_offpolicy_launcher.py)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import algos, normalization
from metarl_jax.collector import Transition
from tests import toy_control

GAMMA = 0.99
LN_EPS = 1e-6  # flax LayerNorm's epsilon


def dense(params, name, x):
    return x @ np.asarray(params[name]["kernel"], np.float64) + np.asarray(params[name]["bias"], np.float64)


def layer_norm(params, name, x):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LN_EPS) * np.asarray(params[name]["scale"]) + np.asarray(params[name]["bias"])


def relu(x):
    return np.maximum(x, 0.0)


def ddpg_actor_by_hand(params, obs):
    p = params["params"]["MLP_0"]
    h = relu(layer_norm(p, "LayerNorm_0", dense(p, "Dense_0", obs)))
    h = relu(layer_norm(p, "LayerNorm_1", dense(p, "Dense_1", h)))
    return np.tanh(dense(p, "Dense_2", h))


def ddpg_critic_by_hand(params, obs, action):
    """baselines' critic: the action joins after the first hidden layer."""
    p = params["params"]
    h = relu(layer_norm(p, "LayerNorm_0", dense(p, "Dense_0", obs)))
    h = relu(layer_norm(p, "LayerNorm_1", dense(p, "Dense_1", np.concatenate([h, action], -1))))
    return dense(p, "Dense_2", h)[..., 0]


def sac_critics_by_hand(params, obs, action):
    """Twin heads without layer norm, the action joining at the input: [B, 2]."""
    p = params["params"]
    x = np.concatenate([obs, action], -1)
    heads = []
    for first in (0, 3):
        h = relu(dense(p, f"Dense_{first}", x))
        h = relu(dense(p, f"Dense_{first + 1}", h))
        heads.append(dense(p, f"Dense_{first + 2}", h)[..., 0])
    return np.stack(heads, -1)


@pytest.fixture(scope="module")
def toy():
    return toy_control.ToyControl(episode_length=10)


def make(name, family, **overrides):
    return algos.make(name, family, algos.preset(name, "smoke").replace(**overrides))


def tiny_batch(dtype=np.float32) -> Transition:
    """Three transitions: one into a terminal state, one cut by the time limit, one ordinary."""
    rng = np.random.default_rng(0)
    return Transition(obs=jnp.asarray(rng.normal(size=(3, 2)), dtype),
                      action=jnp.asarray([[0.5], [-0.3], [0.9]], dtype), reward=jnp.asarray([-1.0, -0.5, -0.25], dtype),
                      next_obs=jnp.asarray(rng.normal(size=(3, 2)), dtype),
                      termination=jnp.asarray([1.0, 0.0, 0.0], dtype), truncation=jnp.asarray([0.0, 1.0, 0.0], dtype),
                      extras={})


def test_ddpg_critic_target_by_hand_truncation_bootstraps_termination_does_not(toy):
    algo = make("ddpg", toy)
    ts = jax.jit(algo.init)(jax.random.key(0))
    stats = normalization.update(ts.extras["experience"].obs_stats, jnp.asarray([[0.5, -1.0], [1.5, 2.0]]))
    batch = tiny_batch()
    y = np.asarray(jax.jit(algo.ddpg.critic_target)(ts.extras["target"], batch, stats))
    target = ts.extras["target"]
    next_obs = np.clip((np.asarray(batch.next_obs) - np.asarray(stats.mean)) / np.asarray(stats.std()), -5, 5)
    next_q = ddpg_critic_by_hand(target["critic"], next_obs, ddpg_actor_by_hand(target["actor"], next_obs))
    reward = np.asarray(batch.reward)
    np.testing.assert_allclose(y, [reward[0], reward[1] + GAMMA * next_q[1], reward[2] + GAMMA * next_q[2]],
                               rtol=1e-5, atol=1e-6)
    assert y[0] == reward[0] and abs(next_q[1]) > 1e-4  # the bootstrap term is really there for the truncation


def test_sac_soft_target_by_hand(toy):
    algo = make("sac", toy, init_alpha=0.7)
    ts = jax.jit(algo.init)(jax.random.key(1))
    batch = tiny_batch()
    key = jax.random.key(5)
    y = np.asarray(jax.jit(algo.soft_target)(ts.params, ts.extras["target_critic"], batch,
                                             ts.extras["experience"].obs_stats, key))
    # ã′ = tanh(μ + σ ε) with ε the policy's normal draw for this key; log π by the change of variables.
    p = ts.params["actor"]["params"]
    next_obs = np.asarray(batch.next_obs, np.float64)
    h = relu(dense(p, "Dense_1", relu(dense(p, "Dense_0", next_obs))))
    mean, raw = np.split(dense(p, "Dense_2", h), 2, axis=-1)
    std = np.log1p(np.exp(raw)) + 1e-3
    eps = np.asarray(jax.random.normal(key, mean.shape), np.float64)
    u = mean + std * eps
    action = np.tanh(u)
    log_prob = np.sum(-0.5 * eps**2 - np.log(std) - 0.5 * math.log(2 * math.pi) - np.log(1 - np.tanh(u) ** 2), -1)
    min_q = sac_critics_by_hand(ts.extras["target_critic"], next_obs, action).min(-1)
    expected = np.asarray(batch.reward) + GAMMA * (1 - np.asarray(batch.termination)) * (min_q - 0.7 * log_prob)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    assert y[0] == float(batch.reward[0])  # termination: r only; truncation (row 1) bootstraps


@pytest.mark.parametrize("raw_std_bias,grows", [(-20.0, True), (0.5, False)])
def test_sac_temperature_gradient_sign(toy, raw_std_bias, grows):
    """∂J/∂log α = α (Ĥ − H̄): below the target entropy −dim(A) = −1 the step raises α, above it lowers α."""
    algo = make("sac", toy)
    ts = jax.jit(algo.init)(jax.random.key(2))
    params = jax.tree.map(lambda x: x, ts.params)
    head = params["actor"]["params"]["Dense_2"]
    # Mean 0 and σ = softplus(bias) + 1e-3 everywhere: ≈ 1e-3 (entropy ≈ −6) or ≈ 0.97 (entropy ≈ 0.4).
    head["kernel"] = jnp.zeros_like(head["kernel"])
    head["bias"] = jnp.asarray([0.0, raw_std_bias], head["bias"].dtype)
    obs = jnp.asarray(np.random.default_rng(0).normal(size=(64, 2)), jnp.float32)
    key = jax.random.key(3)

    @jax.jit
    def measure(params):
        grad = jax.grad(lambda la: algo.alpha_loss(la, params["actor"], obs, key)[0])(params["log_alpha"])
        _, log_prob = algo.policy.apply(params["actor"], obs).sample_with_log_prob(key)
        batch = tiny_batch()._replace(obs=obs[:3])
        new_params, *_ = algo.gradient_step(params, ts.opt_state, ts.extras["target_critic"], batch,
                                            ts.extras["experience"].obs_stats, key)
        return grad, -jnp.mean(log_prob), new_params["log_alpha"]

    grad, entropy, new_log_alpha = (float(x) for x in measure(params))
    assert (entropy < -1.0) == grows
    np.testing.assert_allclose(grad, 1.0 * (entropy - (-1.0)), rtol=1e-4)  # α = 1 at init
    assert (new_log_alpha > float(params["log_alpha"])) == grows


def hand_d0(rng, steps=4):
    obs = rng.normal(size=(1, steps, 1, 2))
    raw = rng.normal(scale=0.8, size=(1, steps, 1, 1))
    return Transition(jnp.asarray(obs, jnp.float32), jnp.asarray(np.clip(raw, -1, 1), jnp.float32),
                      jnp.zeros((1, steps, 1)), jnp.asarray(obs, jnp.float32), jnp.zeros((1, steps, 1)),
                      jnp.zeros((1, steps, 1)), {"raw_action": jnp.asarray(raw, jnp.float32)})


def test_teacher_gradient_is_eq5_in_closed_form(toy):
    """One exploration batch D0 with a known meta reward R̂(D0): the teacher loss's gradient is
    −R̂ Σ_t ∇ log π_e(a_t|s_t), with ∂/∂log σ log N(a; μ, σ²) = (a − μ)²/σ² − 1 and ∂/∂μ = (a − μ)/σ²."""
    rng = np.random.default_rng(3)
    meta_reward = 2.5
    d0 = hand_d0(rng)
    raw = np.asarray(d0.extras["raw_action"], np.float64)[0, :, 0]
    # (i) variance teacher: N(μ(s; θ_π), σ²), only log σ learned, μ the student's actor.
    algo = make("teacher_ddpg", toy, teacher="variance", teacher_init_std=0.5)
    ts = jax.jit(algo.init)(jax.random.key(4))
    stats = ts.extras["experience"].obs_stats
    teacher, actor = ts.params["teacher"], ts.params["actor"]
    grad = jax.grad(lambda t: algo.teacher_loss(t, actor, d0, jnp.asarray([meta_reward]), stats)[0])(teacher)
    obs = np.clip(np.asarray(d0.obs, np.float64)[0, :, 0], -5, 5)  # untouched statistics: identity up to clipping
    mu = ddpg_actor_by_hand(actor, obs)
    sigma = 0.5
    expected = -meta_reward * np.sum((raw - mu) ** 2 / sigma**2 - 1.0, axis=0)
    np.testing.assert_allclose(np.asarray(grad["log_std"]), expected, rtol=1e-4)
    # (ii) independent teacher N(f(s), σ(s)²): the output biases of its mean and log-std networks.
    algo = make("teacher_ddpg", toy, teacher="independent")
    ts = jax.jit(algo.init)(jax.random.key(5))
    teacher = ts.params["teacher"]
    grad = jax.grad(lambda t: algo.teacher_loss(t, ts.params["actor"], d0, jnp.asarray([meta_reward]), stats)[0])(
        teacher)
    dist = algo.teacher_net.apply(teacher, jnp.asarray(obs, jnp.float32))
    mean, var = np.asarray(dist.mean, np.float64), np.exp(2 * np.asarray(dist.log_std, np.float64))
    mean_bias_grad = grad["params"]["mean"]["Dense_2"]["bias"]
    log_std_bias_grad = grad["params"]["log_std"]["Dense_2"]["bias"]
    np.testing.assert_allclose(np.asarray(mean_bias_grad), -meta_reward * np.sum((raw - mean) / var, 0), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(log_std_bias_grad), -meta_reward * np.sum((raw - mean) ** 2 / var - 1, 0),
                               rtol=1e-4)


@pytest.mark.slow  # two compiles of the teacher's iteration: about a minute on 2 cores
def test_teacher_seeds_are_independent_and_each_collects_as_its_single_run(toy):
    """N seeds of Xu et al.'s teacher in one program against their single runs.

    The teacher's iteration chains three Adam steps (π′ on D0, the teacher on the meta reward measured by
    π′'s rollouts, the student on a buffer holding those rollouts), so no equality tolerance for its final
    parameters follows from the problem's conditioning. What does follow: (1) a seed's row of the N-seed
    program depends on its own inputs only, so it is bit-identical when another seed's key changes (the
    same executable on the same row inputs; a reduction over the seed axis would break it); (2) what the
    row computes before the first Adam step, D0 collected by the initial teacher and the rng stream, equals
    the single-seed program's to INPUT_RTOL (float64; tests/equivalence.py); (3) other seeds differ.
    """
    from tests import equivalence as eq

    with jax.enable_x64(True):
        algo = make("teacher_ddpg", toy, epoch_cycles=1, exploration_steps=10, exercise_steps=1, train_steps=1)
        seed_keys = lambda *seeds: jax.vmap(jax.random.key)(jnp.asarray(seeds))  # noqa: E731
        first, _ = algo.train_seeds(algo.init_seeds(seed_keys(3, 4)), 1)
        other, _ = algo.train_seeds(algo.init_seeds(seed_keys(3, 5)), 1)
        single, _ = algo.train(algo.init(jax.random.key(3)), 1)
        assert algo.trace_count <= 2  # the seed program and the single-seed program, each traced once
    row = lambda tree, k: jax.tree.map(lambda x: np.asarray(x)[k], tree)  # noqa: E731
    for a, b in zip(jax.tree.leaves(row(first, 0)), jax.tree.leaves(row(other, 0)), strict=True):
        np.testing.assert_array_equal(a, b)  # (1): seed 3's row ignores the other seed
    assert not np.allclose(np.asarray(first.params["actor"]["params"]["MLP_0"]["Dense_0"]["kernel"])[1],
                           np.asarray(other.params["actor"]["params"]["MLP_0"]["Dense_0"]["kernel"])[1])  # (3)
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(row(first, 0).rng)),
                                  np.asarray(jax.random.key_data(single.rng)))  # (2): the rng stream
    d0 = algo.config.exploration_steps  # the buffer's first entries: D0, stored before D1 (line 9)
    stacked_d0 = jax.tree.map(lambda x: np.asarray(x)[0, :d0], first.extras["experience"].buffer.experience)
    single_d0 = jax.tree.map(lambda x: np.asarray(x)[:d0], single.extras["experience"].buffer.experience)
    eq.assert_close(single_d0, stacked_d0, eq.INPUT_RTOL, "D0, collected before any Adam step")
    assert np.abs(np.asarray(single_d0.obs)).sum() > 0  # a real collection, not an empty buffer
