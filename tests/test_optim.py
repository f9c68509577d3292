"""TRPO pieces (CG, HVP, line search) and the guarded policy optimisers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from metarl_jax import optim
from metarl_jax.networks import DiagGaussian


def _spd(n: int, seed: int, low: float = 1.0, high: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return (q * np.linspace(low, high, n)) @ q.T


def test_conjugate_gradient_solves_spd_system():
    a = _spd(6, 0)
    b = np.random.default_rng(1).normal(size=6)
    a_j, b_j = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    x = np.asarray(optim.conjugate_gradient(lambda v: a_j @ v, b_j, num_iters=20))
    exact = np.linalg.solve(a, b)
    assert np.linalg.norm(x - exact) / np.linalg.norm(exact) < 1e-4


def test_conjugate_gradient_truncated_is_the_krylov_minimiser():
    """After k < n iterations CG's iterate minimises the A-norm error over span{b, Ab, ..., A^{k−1}b}."""
    a = _spd(6, 2, 0.5, 5.0)
    b = np.random.default_rng(3).normal(size=6)
    a_j, b_j = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    residuals = []
    for k in (1, 2, 3):
        x = np.asarray(optim.conjugate_gradient(lambda v: a_j @ v, b_j, num_iters=k), np.float64)
        krylov = np.stack([np.linalg.matrix_power(a, i) @ b for i in range(k)], axis=1)
        reference = krylov @ np.linalg.solve(krylov.T @ a @ krylov, krylov.T @ b)
        np.testing.assert_allclose(x, reference, rtol=1e-4, atol=1e-5)
        residuals.append(np.linalg.norm(b - a @ x))
    assert residuals[0] < np.linalg.norm(b)
    # The A-norm error decreases monotonically; the residual here does too (well-conditioned).
    assert residuals[2] < residuals[0]


def test_hessian_vector_product_nonquadratic():
    a = jnp.asarray(_spd(4, 4), jnp.float32)

    def f(x):
        return jnp.sum(jnp.sin(x) * x**2) + (x @ a @ x) ** 2 + jnp.exp(x[0] * x[1])

    x0 = jnp.asarray([0.3, -0.5, 0.8, 0.1])
    vs = jnp.asarray(np.random.default_rng(5).normal(size=(3, 4)), jnp.float32)

    @jax.jit
    def products_and_hessian(x, vs):
        hvp = optim.hessian_vector_product(f, x)
        # the linearisation is reused across vectors
        return jnp.stack([hvp(v) for v in vs]), jax.hessian(f)(x)

    products, hessian = products_and_hessian(x0, vs)
    np.testing.assert_allclose(np.asarray(products), np.asarray(vs) @ np.asarray(hessian).T, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- trpo_step

OBS, ACT, N = 2, 1, 64


def _linear_gaussian_problem(seed: int = 6, zero_adv: bool = False, subsample_kl: bool = False):
    """A linear-Gaussian policy; fixed random states, actions sampled from the old policy, advantages.

    With ``subsample_kl`` also returns the KL on every other state (a Fisher subsample).
    """
    rng = np.random.default_rng(seed)
    params0 = {
        "w": jnp.asarray(rng.normal(scale=0.5, size=(OBS, ACT)), jnp.float32),
        "b": jnp.zeros((ACT,)),
        "log_std": jnp.full((ACT,), -0.5),
    }
    states = jnp.asarray(rng.normal(size=(N, OBS)), jnp.float32)

    def dist(p):
        mean = states @ p["w"] + p["b"]
        return DiagGaussian(mean, jnp.broadcast_to(p["log_std"], mean.shape))

    old = dist(params0)
    actions = old.sample(jax.random.key(seed))
    old_log_probs = old.log_prob(actions)
    adv = jnp.zeros((N,)) if zero_adv else jnp.asarray(rng.normal(size=(N,)), jnp.float32)

    def loss_and_kl(p):
        new = dist(p)
        ratio = jnp.exp(new.log_prob(actions) - old_log_probs)
        return -jnp.mean(ratio * adv), jnp.mean(old.kl(new))

    if subsample_kl:
        return params0, loss_and_kl, lambda p: jnp.mean(old.kl(dist(p))[::2])
    return params0, loss_and_kl


def test_trpo_step_respects_trust_region_and_follows_natural_gradient():
    params0, loss_and_kl = _linear_gaussian_problem()
    max_kl, ratio = 0.01, 0.8
    new_params, info = jax.jit(lambda p: optim.trpo_step(loss_and_kl, p, max_kl, cg_iters=10,
                                                         backtrack_ratio=ratio))(params0)
    assert bool(info.accepted)
    evaluate = jax.jit(loss_and_kl)
    loss0, kl0 = (float(v) for v in evaluate(params0))
    loss1, kl1 = (float(v) for v in evaluate(new_params))
    np.testing.assert_allclose(kl0, 0.0, atol=1e-7)
    # Reported values are those of the returned parameters.
    np.testing.assert_allclose(float(info.loss_before), loss0, rtol=1e-6)
    np.testing.assert_allclose(float(info.loss_after), loss1, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(info.kl), kl1, rtol=1e-5, atol=1e-9)
    assert loss1 < loss0
    assert 0.0 < kl1 <= max_kl
    # The accepted step is r^k·β·F⁻¹g with β = sqrt(2δ / gᵀF⁻¹g) (P = 4 parameters, 10 CG iterations: exact).
    flat0, unravel = ravel_pytree(params0)
    flat1, _ = ravel_pytree(new_params)
    flat_loss = lambda f: loss_and_kl(unravel(f))[0]  # noqa: E731
    flat_kl = lambda f: loss_and_kl(unravel(f))[1]  # noqa: E731
    g, fisher = jax.jit(lambda f: (jax.grad(flat_loss)(f), jax.hessian(flat_kl)(f)))(flat0)
    g = np.asarray(g, np.float64)
    fisher = np.asarray(fisher, np.float64) + 1e-5 * np.eye(flat0.shape[0])
    x = np.linalg.solve(fisher, g)
    beta = np.sqrt(2 * max_kl / (x @ fisher @ x))
    k = int(info.num_backtracks)
    assert 0 <= k < 15
    expected_step = -(ratio**k) * beta * x
    np.testing.assert_allclose(np.asarray(flat1 - flat0), expected_step, rtol=2e-3, atol=1e-5)
    np.testing.assert_allclose(float(info.step_norm), np.linalg.norm(expected_step), rtol=2e-3)
    np.testing.assert_allclose(float(info.grad_norm), np.linalg.norm(g), rtol=1e-5)
    # The quadratic model is good here: the accepted KL is close to the bound (1st or 2nd try).
    assert kl1 > 0.25 * max_kl


def test_trpo_step_with_a_subsampled_fisher_follows_its_natural_gradient():
    """rllab's subsample_factor: CG (and β) use the KL Hessian of half the states; the full KL is checked."""
    params0, loss_and_kl, half_kl = _linear_gaussian_problem(subsample_kl=True)
    max_kl, ratio = 0.01, 0.8
    new_params, info = jax.jit(lambda p: optim.trpo_step(loss_and_kl, p, max_kl, backtrack_ratio=ratio,
                                                         fisher_kl_fn=half_kl))(params0)
    assert bool(info.accepted)
    flat0, unravel = ravel_pytree(params0)
    g = np.asarray(jax.grad(lambda f: loss_and_kl(unravel(f))[0])(flat0), np.float64)
    fisher = np.asarray(jax.hessian(lambda f: half_kl(unravel(f)))(flat0), np.float64) + 1e-5 * np.eye(g.size)
    full_fisher = np.asarray(jax.hessian(lambda f: loss_and_kl(unravel(f))[1])(flat0), np.float64)
    assert np.abs(fisher - full_fisher).max() > 1e-2  # the subsample is a different matrix
    x = np.linalg.solve(fisher, g)
    expected_step = -(ratio ** int(info.num_backtracks)) * np.sqrt(2 * max_kl / (x @ fisher @ x)) * x
    np.testing.assert_allclose(np.asarray(ravel_pytree(new_params)[0] - flat0), expected_step, rtol=2e-3, atol=1e-5)
    assert float(loss_and_kl(new_params)[1]) <= max_kl  # the line search checks the full KL


def test_trpo_optimizer_uses_the_fisher_objective_only_for_the_fisher():
    """Passing the objective itself as the Fisher objective changes nothing (bit for bit)."""
    opt = optim.trpo(0.01)
    objective = _objective_fn(FINITE_ADV)
    params = {"mu": jnp.asarray(MU0)}
    plain = jax.jit(lambda p: opt.update(objective, p, opt.init(p)))(params)
    explicit = jax.jit(lambda p: opt.update(objective, p, opt.init(p), objective))(params)
    assert _tree_equal(plain[0], explicit[0])
    assert float(plain[2]["kl"]) > 0


def _loss_increases_along_every_candidate():
    theta0 = {"theta": jnp.asarray([0.2, -0.4, 0.7])}
    g = jnp.asarray([0.6, -0.8, 0.0])  # ∇L(θ0) has norm 1

    def loss_and_kl(p):
        d = p["theta"] - theta0["theta"]
        # −‖g‖t + 1000t² along −g: increases for any step longer than 1e-3 (the smallest candidate
        # here is 0.8^14·sqrt(2·0.01) ≈ 6e-3).
        return g @ d + 1000.0 * d @ d, 0.5 * d @ d

    return theta0, loss_and_kl


def _needs_backtracking():
    """The quadratic KL model underestimates a quartic KL: the first candidates overshoot δ."""
    theta0 = {"theta": jnp.asarray([0.3, -0.1])}

    def loss_and_kl(p):
        d = p["theta"] - theta0["theta"]
        return -jnp.sum(d), 0.5 * d @ d + 50.0 * jnp.sum(d**4)

    return theta0, loss_and_kl


@pytest.mark.parametrize("problem", ["accepts", "backtracks", "rejects"])
def test_batched_line_search_takes_the_sequential_step(problem):
    params0, loss_and_kl = {"accepts": _linear_gaussian_problem, "backtracks": _needs_backtracking,
                            "rejects": _loss_increases_along_every_candidate}[problem]()
    results = [jax.jit(lambda p, b=batched: optim.trpo_step(loss_and_kl, p, 0.01, batched_line_search=b))(params0)
               for batched in (False, True)]
    (sequential, info_s), (batched, info_b) = results
    assert _tree_equal(sequential, batched)
    for field in info_s._fields:
        np.testing.assert_allclose(np.asarray(getattr(info_b, field)), np.asarray(getattr(info_s, field)),
                                   rtol=1e-6, err_msg=field)
    assert bool(info_s.accepted) == (problem != "rejects")
    if problem == "backtracks":
        assert int(info_s.num_backtracks) >= 2


def _assert_rejected(params0, new_params, info):
    assert not bool(info.accepted)
    for key in params0:
        np.testing.assert_array_equal(np.asarray(new_params[key]), np.asarray(params0[key]))
    assert float(info.loss_after) == float(info.loss_before)
    assert float(info.kl) == 0.0
    assert float(info.step_norm) == 0.0


def test_trpo_step_rejects_when_advantages_are_zero():
    params0, loss_and_kl = _linear_gaussian_problem(zero_adv=True)
    new_params, info = jax.jit(lambda p: optim.trpo_step(loss_and_kl, p, 0.01))(params0)
    _assert_rejected(params0, new_params, info)


def test_trpo_step_rejects_when_loss_increases_along_every_candidate():
    theta0, loss_and_kl = _loss_increases_along_every_candidate()
    new_params, info = jax.jit(lambda p: optim.trpo_step(loss_and_kl, p, 0.01))(theta0)
    _assert_rejected(theta0, new_params, info)
    np.testing.assert_allclose(float(info.grad_norm), 1.0, rtol=1e-5)
    assert int(info.num_backtracks) == 14  # all 15 candidates were tried


def test_trpo_step_rejects_when_kl_exceeds_bound_on_every_candidate():
    theta0 = {"theta": jnp.asarray([0.2, -0.4])}

    def loss_and_kl(p):
        d = p["theta"] - theta0["theta"]
        # Linear (always improvable) loss; the KL's Hessian at θ0 is I but the quartic term makes
        # every candidate (length ≥ 6e-3) violate KL ≤ 0.01.
        return jnp.sum(d), 0.5 * d @ d + 1e9 * (d @ d) ** 2

    new_params, info = jax.jit(lambda p: optim.trpo_step(loss_and_kl, p, 0.01))(theta0)
    _assert_rejected(theta0, new_params, info)


# ----------------------------------------------------------------------------- policy optimisers


MU0 = np.array([0.1, -0.2, 0.3], np.float32)


def _objective_fn(adv_values, old_mean=MU0):
    """A 3-parameter Gaussian-mean objective on fixed data (behaviour mean ``old_mean``); adv may contain NaN."""
    rng = np.random.default_rng(7)
    actions = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
    adv = jnp.asarray(adv_values, jnp.float32)
    old = DiagGaussian(jnp.asarray(old_mean, jnp.float32), jnp.zeros((3,)))
    old_log_probs = old.log_prob(actions)

    def objective(params):
        new = DiagGaussian(params["mu"], jnp.zeros((3,)))
        return optim.PolicyObjective(
            log_ratio=new.log_prob(actions) - old_log_probs,
            advantages=adv,
            mask=jnp.ones((8,)),
            kl=old.kl(new),
            penalty=jnp.zeros(()),
        )

    return objective


FINITE_ADV = np.random.default_rng(8).normal(size=8)
NAN_ADV = FINITE_ADV.copy()
NAN_ADV[3] = np.nan

OPTIMIZERS = {
    "vpg": (lambda: optim.vpg(0.1), 1),
    "ppo": (lambda: optim.ppo(0.1, clip=0.2, num_epochs=3), 3),
    "trpo": (lambda: optim.trpo(0.01), 1),
}


def _tree_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_policy_optimizer_skips_nonfinite_update(name):
    make, num_epochs = OPTIMIZERS[name]
    opt = make()
    params = {"mu": jnp.asarray(MU0)}
    state = opt.init(params)
    # One compilation for both calls: the advantages are a traced argument.
    update = jax.jit(lambda adv, p, s: opt.update(_objective_fn(adv), p, s))
    new_params, new_state, info = update(jnp.asarray(NAN_ADV, jnp.float32), params, state)
    assert _tree_equal(new_params, params)
    assert _tree_equal(new_state, state)
    assert int(info["nonfinite"]) == 1  # one skipped update, whatever its number of epochs
    # Control: with finite advantages the same optimiser does move and reports nothing skipped.
    moved_params, moved_state, info_ok = update(jnp.asarray(FINITE_ADV, jnp.float32), params, state)
    assert int(info_ok["nonfinite"]) == 0
    assert not _tree_equal(moved_params, params)
    if name != "trpo":
        assert not _tree_equal(moved_state, state)


def test_vpg_is_one_adam_step_on_the_reinforce_loss():
    lr = 0.05
    opt = optim.vpg(lr)
    params = {"mu": jnp.asarray([0.1, -0.2, 0.3])}
    old_mean = np.zeros(3, np.float32)  # ρ ≠ 1 at the current parameters
    objective_fn = _objective_fn(FINITE_ADV, old_mean)
    new_params, _, info = jax.jit(opt.update, static_argnums=0)(objective_fn, params, opt.init(params))
    # −mean(ρA): with unit variance, ∇_μ log N(a; μ, I) = a − μ, and ρ = π_μ/π_old.
    rng = np.random.default_rng(7)
    actions = rng.normal(size=(8, 3))
    mu = np.array([0.1, -0.2, 0.3])
    rho = np.exp(-0.5 * ((actions - mu) ** 2).sum(-1) + 0.5 * (actions**2).sum(-1))
    loss = -np.mean(rho * FINITE_ADV)
    grad = -np.mean((rho * FINITE_ADV)[:, None] * (actions - mu), axis=0)
    np.testing.assert_allclose(float(info["loss"]), loss, rtol=1e-5)
    np.testing.assert_allclose(float(info["grad_norm"]), np.linalg.norm(grad), rtol=1e-5)
    # Adam's first step: −lr · g / (|g| + eps) (bias corrections cancel).
    np.testing.assert_allclose(np.asarray(new_params["mu"]), mu - lr * grad / (np.abs(grad) + 1e-8), rtol=1e-5)
    assert float(info["nonfinite"]) == 0


def test_guard_nonfinite_keeps_old_tree():
    old = {"a": jnp.ones(2), "b": jnp.zeros(())}
    new = {"a": jnp.asarray([2.0, 3.0]), "b": jnp.asarray(5.0)}
    kept, finite = optim.guard_nonfinite(old, new, jnp.asarray(1.0))
    assert bool(finite) and _tree_equal(kept, new)
    kept, finite = optim.guard_nonfinite(old, new, jnp.asarray(jnp.inf))
    assert not bool(finite) and _tree_equal(kept, old)
    bad = {"a": jnp.asarray([2.0, jnp.nan]), "b": jnp.asarray(5.0)}
    kept, finite = optim.guard_nonfinite(old, bad)
    assert not bool(finite) and _tree_equal(kept, old)


@pytest.mark.parametrize("name", ["maml", "maesn"])
def test_trpo_quadratic_kl_model_is_the_kl_its_line_search_measures(name):
    """TRPO sizes its step by ½ s² xᵀFx = KL and then measures the KL of the candidate. With DiCE's magic
    boxes the autodiff derivatives of the inner step are not those of the step the code takes at another θ
    (samples held fixed), so a Fisher taken from the estimator mis-sizes every step (measured: the KL at
    small s was 14.7x the model for MAML on point_corner, 0.006x on cheetah_vel). TRPO's Fisher and line
    search therefore use the realized objective; the ascent direction is still the estimator's gradient."""
    from jax.flatten_util import ravel_pytree

    from metarl_jax import algos, envs
    from metarl_jax.algos.base import split_rng
    from tests.equivalence import outer_problem

    with jax.enable_x64(True):  # the KL at s = 1e-3 is ~1e-8: float32 would be rounding
        family = envs.make("point_corner", episode_length=20)
        overrides = dict(hidden_sizes=(16,), meta_batch_size=2, episodes_per_task=8)
        config = algos.preset(name, "smoke").replace(**overrides, **({"num_train_tasks": 4} if name == "maesn" else {}))
        algo = algos.make(name, family, config)
        ts = algo.init(jax.random.key(0))

        @jax.jit
        def model_and_measured(ts):
            batch, gradient, fisher = outer_problem(algo, ts)
            if name == "maesn":
                realized = lambda p: algo.meta_objective(p, *batch, realized=True)  # noqa: E731
            else:
                realized = algo.realized_objective(batch[0], batch[1])
            flat0, unravel = ravel_pytree(ts.params)
            g = ravel_pytree(gradient)[0]
            direction = optim.conjugate_gradient(lambda v: fisher @ v + config.cg_damping * v, g, config.cg_iters)
            scale = 1e-3 * jnp.sqrt(2 * config.max_kl / (direction @ fisher @ direction))
            model = 0.5 * scale**2 * direction @ fisher @ direction
            return model, realized(unravel(flat0 - scale * direction)).kl, split_rng(ts, 1)[0].step

        model, measured, _ = model_and_measured(ts)
        # s = 1e-3 of the trust-region step: the cubic term is ~1e-3 relative (measured ratio 1.000).
        np.testing.assert_allclose(float(measured), float(model), rtol=2e-2)
