"""TESP and AdaptSV: the best-M episode buffer, the fast updates and their meta-gradient, learning."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import algos, envs, optim
from metarl_jax.algos import tesp
from metarl_jax.episode_buffer import empty_buffer, keep_best, masked_episode_mean
from tests.bandit import LinearGaussianBandit


def test_best_buffer_keeps_the_top_episodes_like_a_stable_python_sort():
    """S_M(B ∪ X) against ``sorted(old + new, key=return, reverse=True)[:M]`` (stable: ties keep the older)."""
    rng = np.random.default_rng(0)
    capacity, horizon = 5, 3
    step = jax.jit(keep_best)
    buffer = empty_buffer(capacity, horizon, 1)
    held = []  # the Python reference: (return, id) of the held episodes, best first
    next_id = 0
    for batch_size in (3, 4, 6, 2):  # the first batch leaves two slots empty
        returns = rng.choice([-3.0, -1.0, 0.0, 2.0], size=batch_size)  # many ties
        ids = np.arange(next_id, next_id + batch_size)
        next_id += batch_size
        steps = jnp.asarray(np.broadcast_to(ids[:, None, None], (batch_size, horizon, 1)), jnp.float32)
        mask = jnp.asarray(rng.integers(0, 2, (batch_size, horizon)), jnp.float32)
        buffer = step(buffer, steps, mask, jnp.asarray(returns, jnp.float32))
        held = sorted(held + list(zip(returns.tolist(), ids.tolist())), key=lambda e: e[0], reverse=True)[:capacity]
        valid = np.asarray(buffer.valid) > 0
        assert valid.sum() == len(held)
        np.testing.assert_array_equal(np.asarray(buffer.steps)[valid, 0, 0], [i for _, i in held])
        np.testing.assert_array_equal(np.asarray(buffer.returns)[valid], [r for r, _ in held])
    # The mean over held episodes ignores empty slots.
    partial = keep_best(empty_buffer(4, 1, 1), jnp.ones((2, 1, 1)), jnp.ones((2, 1)), jnp.asarray([1.0, 2.0]))
    np.testing.assert_allclose(masked_episode_mean(jnp.asarray([1.0, 3.0, 100.0, 100.0]), partial), 2.0)
    # With room for every episode (ablation V1) nothing is dropped.
    everything = keep_best(empty_buffer(8, 1, 1), jnp.ones((8, 1, 1)), jnp.ones((8, 1)), jnp.arange(8.0))
    assert float(everything.size) == 8


@pytest.fixture(scope="module")
def semicircle():
    return envs.make("point_semicircle", episode_length=10)


@pytest.fixture(scope="module")
def tiny(semicircle):
    """TESP (smoke) on point navigation, its initial state and one meta-batch of fast adaptations."""
    algo = algos.make("tesp", semicircle, algos.preset("tesp", "smoke"))
    ts = algo.init(jax.random.key(0))
    # Some learned rates outside ±0.1 (and exactly 0): the clip must hold them.
    rates = ts.params["step_size"]["encoder"]["projection"]["params"]
    rates = {"kernel": rates["kernel"].at[0].set(0.5).at[1].set(-0.3), "bias": rates["bias"].at[0].set(0.0)}
    step_size = {"encoder": {**ts.params["step_size"]["encoder"], "projection": {"params": rates}}}
    ts = ts.replace(params={**ts.params, "step_size": step_size})
    adaptations = jax.jit(algo.collect)(ts.params, jax.random.key(1))
    return algo, ts, adaptations


def leaves_equal(a, b) -> list[bool]:
    return [bool(np.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)]


def test_learned_rates_are_clipped(tiny):
    algo, ts, adaptations = tiny
    alpha = algo.step_sizes(ts.params)["encoder"]["projection"]["params"]["kernel"]
    np.testing.assert_array_equal(np.asarray(alpha[0]), np.float32(0.1))
    np.testing.assert_array_equal(np.asarray(alpha[1]), np.float32(-0.1))
    np.testing.assert_allclose(np.asarray(alpha[2:]), 0.001)
    # θ' = θ + clip(α) ∘ Σ ĝ, entry by entry.
    grad_sum = jax.tree.map(lambda g: g[0], adaptations.grad_sum)
    adapted = algo.adapted(ts.params, grad_sum)["encoder"]["projection"]["params"]["kernel"]
    theta = ts.params["encoder"]["projection"]["params"]["kernel"]
    g = grad_sum["encoder"]["projection"]["params"]["kernel"]
    np.testing.assert_allclose(np.asarray(adapted), np.asarray(theta + alpha * g), rtol=1e-6)
    # The inner gradients were clipped to global norm 60 (smoke gradients are far smaller: unclipped here).
    assert float(optim.policy_update.optax.global_norm(grad_sum)) < 3 * algo.config.inner_grad_clip


def test_meta_gradient_is_first_order_in_the_encoder_and_exact_in_the_rates(tiny):
    """∂L/∂θ_TE = Σ_i ∂L/∂θ'_i (identity Jacobian) and ∂L/∂α = Σ_i ∂L/∂θ'_i ∘ Σ_k ĝ_ik where |α| < 0.1, else 0."""
    algo, ts, adaptations = tiny

    def loss(params):
        return optim.policy_loss(algo.meta_objective(params, adaptations), algo.config.ppo_clip)

    grads = jax.jit(jax.grad(loss))(ts.params)
    # The same objective as a function of the per-task adapted encoders θ'_i, passed in directly.
    probe = copy.copy(algo)
    probe.adapted = lambda params, fast: fast
    adapted = jax.vmap(algo.adapted, in_axes=(None, 0))(ts.params, adaptations.grad_sum)

    def loss_at(adapted):
        return optim.policy_loss(probe.meta_objective(ts.params, adaptations._replace(grad_sum=adapted)),
                                 algo.config.ppo_clip)

    per_task = jax.jit(jax.grad(loss_at))(adapted)["encoder"]
    expected_theta = jax.tree.map(lambda g: jnp.sum(g, axis=0), per_task)
    inside = jax.tree.map(lambda a: (jnp.abs(a) < algo.config.step_size_clip).astype(a.dtype),
                          ts.params["step_size"]["encoder"])
    expected_alpha = jax.tree.map(lambda g, s, m: jnp.sum(g * s, axis=0) * m, per_task,
                                  adaptations.grad_sum["encoder"], inside)
    for got, want in zip(jax.tree.leaves(grads["encoder"]), jax.tree.leaves(expected_theta)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-9)
    for got, want in zip(jax.tree.leaves(grads["step_size"]["encoder"]), jax.tree.leaves(expected_alpha)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-12)
    kernel_grad = grads["step_size"]["encoder"]["projection"]["params"]["kernel"]
    assert np.all(np.asarray(kernel_grad[:2]) == 0.0) and np.any(np.asarray(kernel_grad[2:]) != 0.0)
    assert all(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads["policy"]))


def test_ratio_is_one_at_the_sampling_parameters(tiny):
    algo, ts, adaptations = tiny
    objective = jax.jit(algo.meta_objective)(ts.params, adaptations)
    mask = np.asarray(objective.mask) > 0
    np.testing.assert_allclose(np.asarray(objective.log_ratio)[mask], 0.0, atol=1e-5)
    np.testing.assert_allclose(float(objective.kl), 0.0, atol=1e-6)
    # The penalty is η mean_i mean_d (h^{K+1}_i)².
    expected = algo.config.embedding_l2 * np.mean(np.asarray(adaptations.embeddings[:, -1]) ** 2)
    np.testing.assert_allclose(float(objective.penalty), expected, rtol=1e-4)


def test_the_fast_updates_change_only_the_encoder(tiny):
    algo, ts, adaptations = tiny
    buffer = jax.tree.map(lambda x: x[0], adaptations.buffer)
    assert np.all(np.asarray(buffer.valid) == 1) and np.all(np.diff(np.asarray(buffer.returns)) <= 0)
    for i in range(algo.config.meta_batch_size):
        adapted = algo.adapted_params(ts.params, jax.tree.map(lambda g, i=i: g[i], adaptations.grad_sum))
        assert all(leaves_equal(adapted["policy"], ts.params["policy"]))
        assert all(leaves_equal(adapted["step_size"], ts.params["step_size"]))
        assert not any(leaves_equal(adapted["encoder"], ts.params["encoder"]))
    # The embedding moves with the fast updates and the buffer.
    assert float(jnp.min(jnp.linalg.norm(adaptations.embeddings[:, -1] - adaptations.embeddings[:, 0], axis=-1))) > 0


def test_adapt_sv_adapts_only_its_vector_and_v2_also_the_policy(semicircle):
    for name, overrides, changed in (("adapt_sv", {}, {"vector"}), ("tesp", tesp.ABLATIONS["V2"],
                                                                    {"encoder", "policy"})):
        algo = algos.make(name, semicircle, algos.preset(name, "smoke").replace(**overrides))
        ts = algo.init(jax.random.key(0))
        adaptation = jax.jit(algo.adapt_task, static_argnums=(3, 4, 5))(
            ts.params, semicircle.task_set("train", 1)[0], jax.random.key(1), 4, 2, "dense")
        adapted = algo.adapted_params(ts.params, adaptation.grad_sum)
        moved = {k for k in adapted if not all(leaves_equal(adapted[k], ts.params[k]))}
        assert moved == changed, (name, moved)
        assert adaptation.returns.shape == (3,)


def test_presets_follow_the_supplement_and_ablations_are_config_fields():
    reacher = algos.preset("tesp", "reacher2")
    assert (reacher.hidden_sizes, reacher.gru_size, reacher.embedding_size, reacher.embedding_l2) == (
        (256, 256), 256, 8, 0.005)
    assert algos.preset("adapt_sv", "reacher2").embedding_l2 == 0.001
    assert algos.preset("tesp", "ant_goal").embedding_size == 32 and algos.preset("tesp", "reacher4").hidden_sizes == (
        512, 512)
    paper = algos.preset("tesp", "paper")
    assert (paper.buffer_size, paper.num_inner_steps, paper.fast_lr, paper.step_size_clip, paper.inner_grad_clip,
            paper.ppo_clip, paper.learning_rate, paper.ppo_epochs, paper.discount, paper.gae_lambda) == (
        16, 3, 0.001, 0.1, 60.0, 0.15, 3e-4, 20, 0.99, 0.97)
    for name in ("tesp", "adapt_sv"):
        for preset in algos.presets(name).values():
            for overrides in tesp.ABLATIONS.values():
                preset.replace(**overrides)
    family = LinearGaussianBandit()
    v4 = algos.make("tesp", family, algos.preset("tesp", "smoke").replace(**tesp.ABLATIONS["V4"]))
    assert not v4.adapts and v4.buffer_capacity(4, 3) == 2
    v1 = algos.make("tesp", family, algos.preset("tesp", "smoke").replace(**tesp.ABLATIONS["V1"]))
    assert v1.buffer_capacity(4, 3) == 16  # warm-up + 3 batches of 4 episodes
    with pytest.raises(ValueError, match="'meta_batch_size' = 9 must be <= 'num_train_tasks' = 8"):
        algos.preset("tesp", "smoke").replace(meta_batch_size=9)


def test_tesp_on_reacher2_improves_after_its_fast_updates():
    """Tiny TESP on the 2-link reacher (TESP's targets, horizon 20): after meta-training, the batch after the
    3 fast updates returns more than the batch before them, on the training tasks."""
    family = envs.make("reacher2", episode_length=20)
    config = algos.preset("tesp", "smoke").replace(meta_batch_size=8, episodes_per_task=8, buffer_size=4,
                                                    num_train_tasks=16, ppo_epochs=5, learning_rate=1e-3)
    algo = algos.make("tesp", family, config)
    ts, first = algo.train(algo.init(jax.random.key(0)), 50)
    ts, second = algo.train(ts, 50)
    assert algo.trace_count == 1  # two calls of the scanned program, one trace
    metrics = {k: np.concatenate([first[k], second[k]]) for k in first}
    # 8 tasks × 8 episodes × 20 steps × (warm-up + 3 fast-update batches + τ^{K+1}) per iteration.
    np.testing.assert_array_equal(metrics["time/env_steps"][:2], [1 * 8 * 8 * 20 * 5, 2 * 8 * 8 * 20 * 5])
    assert all(np.all(np.isfinite(v)) for v in metrics.values())
    pre, post = metrics["train/pre_return"][-40:], metrics["train/post_return"][-40:]
    print(f"TESP reacher2, last 40 iterations: before the fast updates {pre.mean():.2f}, after {post.mean():.2f}")
    gain = post - pre
    assert gain.mean() > 3 * gain.std(ddof=1) / np.sqrt(gain.size), (pre.mean(), post.mean(), gain.std())
