"""The planar hopper/walker families and the dynamics-varying tasks (envs/planar.py, envs/rand_params.py).

One compiled program per family, shared by its checks: from ONE start state and ONE sequence of
random actions, 2 tasks are stepped side by side (a vmap over tasks is a vmap over physics models).
Each trajectory is compared with MuJoCo's C engine (``mj_step``, 100 Newton / 50 line-search
iterations) on an MjModel carrying that task's parameters; the two tasks' trajectories must differ
from each other and from the nominal model's by far more than that tolerance.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from metarl_jax import envs
from metarl_jax.envs import rand_params
from metarl_jax.envs.mjx_base import load_mj_model

HORIZON = 20
# Max |Δqpos| against the C engine over HORIZON control steps of random actions (float32 MJX). Measured
# over 30 steps: hopper 7e-7 (Newton 4 / 8), walkers 3e-5 (6 / 10; with 3 / 6 iterations the walker's first
# floor impacts were off by 0.45). Halving the gear or using the nominal model moves qpos by 5e-2 to 1.
TOLERANCE = {"hopper_rand_params": 1e-4, "walker2d_rand_params": 1e-3, "walker2d_dir": 1e-3}
# Differences the tasks must make (measured ≥ 5e-2 by step 20).
DISTINCT = 1e-2
FAMILIES = [pytest.param("hopper_rand_params"), pytest.param("walker2d_rand_params", marks=pytest.mark.slow),
            pytest.param("walker2d_dir", marks=pytest.mark.slow)]


def two_tasks(family):
    if isinstance(family, rand_params.RandParamsTasks):
        return family.sample_tasks(jax.random.key(0), 2)
    return jnp.array([1.0, -1.0])


_ROLLOUTS: dict = {}


def rollout(name):
    """(family, tasks, start state [2], trajectory [2, T]) with a shared start state and action sequence."""
    if name not in _ROLLOUTS:
        family = envs.make(name, episode_length=HORIZON)
        tasks = two_tasks(family)

        def run(task):
            start = family.reset(jax.random.key(1), task)

            def body(state, key):
                action = jax.random.uniform(key, (family.action_size,), minval=-1.2, maxval=1.2)
                state = family.step(state, action)
                return state, {"action": action, "qpos": state.env_state.qpos, "qvel": state.env_state.qvel,
                               "ctrl": state.env_state.ctrl, "obs": state.obs, "reward": state.reward,
                               "done": state.done, "position": state.info["position"]}

            return start, jax.lax.scan(body, start, jax.random.split(jax.random.key(2), HORIZON))[1]

        start, trajectory = jax.jit(jax.vmap(run))(tasks)
        _ROLLOUTS[name] = (family, tasks, start, jax.tree.map(np.asarray, trajectory))
    return _ROLLOUTS[name]


def c_engine_qpos(family, qpos0, qvel0, controls, parameters=None):
    """qpos after each control step from mujoco.mj_step (100 iterations) on a model with ``parameters`` set."""
    model = load_mj_model(family.xml_path)
    model.opt.iterations, model.opt.ls_iterations = 100, 50
    for field, value in (parameters or {}).items():
        getattr(model, field)[:] = np.asarray(value, np.float64)
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = qpos0, qvel0
    out = []
    for ctrl in controls:
        data.ctrl[:] = ctrl
        for _ in range(family.frame_skip):
            mujoco.mj_step(model, data)
        out.append(data.qpos.copy())
    return np.stack(out)


@pytest.mark.parametrize("name", FAMILIES)
def test_family_steps_match_the_c_engine_per_task_and_tasks_differ(name):
    family, tasks, start, trajectory = rollout(name)
    assert trajectory["obs"].shape == (2, HORIZON, family.observation_size)
    assert np.all(np.isfinite(trajectory["qpos"]))
    np.testing.assert_array_equal(trajectory["action"][0], trajectory["action"][1])  # the same actions
    np.testing.assert_array_equal(np.asarray(start.env_state.qpos[0]), np.asarray(start.env_state.qpos[1]))
    varying = isinstance(family, rand_params.RandParamsTasks)
    for env in range(2):
        qpos0 = np.asarray(start.env_state.qpos[env], np.float64)
        qvel0 = np.asarray(start.env_state.qvel[env], np.float64)
        controls = trajectory["ctrl"][env]
        parameters = jax.tree.map(lambda x, e=env: np.asarray(x[e]), tasks) if varying else None
        reference = c_engine_qpos(family, qpos0, qvel0, controls, parameters)
        error = np.abs(trajectory["qpos"][env] - reference).max()
        assert error < TOLERANCE[name], f"{name} task {env}: MJX vs C engine max |Δqpos| = {error:.3g}"
        if varying:  # the nominal model is another system: the task's parameters are really in the physics
            nominal = c_engine_qpos(family, qpos0, qvel0, controls)
            assert np.abs(trajectory["qpos"][env] - nominal).max() > DISTINCT
    if varying:  # two tasks, same start and actions, different trajectories
        assert np.abs(trajectory["qpos"][0] - trajectory["qpos"][1]).max() > DISTINCT


@pytest.mark.parametrize("name", FAMILIES)
def test_rewards_observations_and_termination_follow_gym(name):
    family, tasks, start, trajectory = rollout(name)
    x = np.concatenate([np.asarray(start.env_state.qpos)[:, None, 0], trajectory["qpos"][..., 0]], axis=1)
    velocity = np.diff(x, axis=1) / family.dt
    direction = np.asarray(tasks)[:, None] if name == "walker2d_dir" else 1.0
    action = np.clip(trajectory["action"], -1.0, 1.0)
    expected = direction * velocity + 1.0 - 1e-3 * np.sum(action**2, axis=-1)
    np.testing.assert_allclose(trajectory["reward"], expected, rtol=1e-4, atol=1e-4)
    qpos, qvel = trajectory["qpos"], trajectory["qvel"]
    np.testing.assert_allclose(trajectory["obs"], np.concatenate([qpos[..., 1:], np.clip(qvel, -10, 10)], -1),
                               atol=1e-6)
    height, angle = qpos[..., 1], qpos[..., 2]
    if name.startswith("hopper"):
        state = np.concatenate([qpos, qvel], -1)
        healthy = (np.abs(state[..., 2:]) < 100).all(-1) & (height > 0.7) & (np.abs(angle) < 0.2)
    else:
        healthy = (height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0)
    terminal = ~healthy
    terminal[:, -1] = True  # the time limit
    np.testing.assert_array_equal(trajectory["done"] > 0, terminal)
    assert terminal[:, :-1].any()  # random actions make it fall within the horizon


@pytest.mark.parametrize("name", ["hopper_rand_params", pytest.param("walker2d_rand_params", marks=pytest.mark.slow)])
def test_rand_params_tasks_are_rand_param_envs_multipliers(name):
    family = envs.make(name)
    model = family.mj_model
    tasks = family.task_set("train")
    np.testing.assert_array_equal(np.asarray(tasks["body_mass"]), np.asarray(family.task_set("train")["body_mass"]))
    assert not np.allclose(np.asarray(tasks["body_mass"]), np.asarray(family.task_set("val")["body_mass"]))
    for field, base in (("body_mass", 1.5), ("body_inertia", 1.5), ("geom_friction", 1.5), ("dof_damping", 1.3)):
        nominal = np.asarray(getattr(model, field))
        values = np.asarray(tasks[field])
        assert values.shape == (100, *nominal.shape)
        scaled = nominal != 0
        exponent = np.log(values[:, scaled] / nominal[scaled]) / np.log(base)
        assert np.all(np.abs(exponent) <= 3.0 + 1e-4) and exponent.min() < -2.5 and exponent.max() > 2.5, field
        assert np.std(exponent) > 1.0  # independent per element and task
        np.testing.assert_array_equal(values[:, ~scaled], 0.0)
    # Explicit pairs: the max of the two geoms' scaled frictions, as MuJoCo mixes default contacts.
    geom = np.asarray(tasks["geom_friction"])
    mixed = np.maximum(geom[:, model.pair_geom1], geom[:, model.pair_geom2])
    np.testing.assert_allclose(np.asarray(tasks["pair_friction"]), mixed[..., [0, 0, 1, 2, 2]], rtol=1e-6)
    # Unit multipliers give the compiled model, pair frictions included; the task's model carries the values.
    nominal_task = family.nominal_task()
    np.testing.assert_allclose(np.asarray(nominal_task["pair_friction"]), model.pair_friction, rtol=1e-6)
    task = jax.tree.map(lambda x: x[3], tasks)
    physics = family.physics_model(task)
    for field in rand_params.TASK_FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(physics, field)), np.asarray(task[field]))
    with pytest.raises(ValueError, match="log_scale_limit"):
        envs.make(name, log_scale_limit=0.0)
