r"""MAML training throughput (a thin wrapper of ``benchmarks.training``) and its phase breakdown.

    python -m benchmarks.maml_throughput [--tasks=40 --episodes=20 --horizon=100 --iterations=3]

``measure_maml`` is ``training.measure_training("maml", ...)`` with the policy-rollout
limit switched on: training env steps/s (pre- and post-update rollouts,
B × E × T × (K + 1) per meta-iteration) against physics alone and against the same
policy rolled out alone for the same B × E parallel episodes.
``phase_breakdown`` times each phase of one meta-iteration jitted on its own.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import jax
import jax.flatten_util
import jax.numpy as jnp

from benchmarks.timing import environment, time_call
from benchmarks.training import measure_training
from metarl_jax import algos, envs
from metarl_jax.optim.trpo import gauss_newton_vector_product


def measure_maml(env: str = "point_corner", tasks: int = 40, episodes: int = 20, horizon: int = 100,
                 iterations: int = 3, repeats: int = 3, hidden: tuple[int, ...] = (100, 100)) -> dict[str, Any]:
    return measure_training("maml", env, tasks, episodes, horizon, iterations, repeats, hidden=hidden,
                            policy_rollout=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="point_corner")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--phases", action="store_true", help="print the phase breakdown instead")
    args = parser.parse_args()
    if args.phases:
        result = phase_breakdown(args.env, args.tasks, args.episodes, args.horizon, repeats=args.repeats)
    else:
        result = measure_maml(args.env, args.tasks, args.episodes, args.horizon, args.iterations, args.repeats)
    print(json.dumps({**environment(), **result}, indent=2))


def phase_breakdown(env: str = "point_corner", tasks: int = 8, episodes: int = 10, horizon: int = 100,
                    hidden: tuple[int, ...] = (100, 100), repeats: int = 3) -> dict[str, float]:
    """Seconds per phase of one meta-iteration, each phase jitted on its own."""
    family = envs.make(env, episode_length=horizon)
    config = algos.maml.Config(hidden_sizes=hidden, meta_batch_size=tasks, episodes_per_task=episodes)
    algo = algos.make("maml", family, config)
    ts = algo.init(jax.random.key(0))
    task_batch = family.sample_tasks(jax.random.key(1), tasks)
    keys = jax.random.split(jax.random.key(2), tasks)
    sample = jax.jit(jax.vmap(algo.sample_adaptation, in_axes=(None, 0, 0)))
    inner, post, _ = sample(ts.params, task_batch, keys)

    def surrogate(p):
        o = algo.meta_objective(p, inner, post)
        return -jnp.mean(jnp.exp(o.log_ratio) * o.advantages)

    meta_grad = jax.jit(jax.grad(surrogate))
    flat, unravel = jax.flatten_util.ravel_pytree(ts.params)

    def outputs_and_weights(f):
        objective = algo.meta_objective(unravel(f), inner, post)
        return objective.fisher_outputs, objective.fisher_weights

    fisher_product = jax.jit(lambda v: gauss_newton_vector_product(outputs_and_weights, flat)(v))
    update = jax.jit(lambda p: algo.optimizer.update(lambda q: algo.meta_objective(q, inner, post), p, ()))
    phases = {
        "sample_and_adapt_s": time_call(lambda: sample(ts.params, task_batch, keys), repeats)["median_s"],
        "meta_gradient_s": time_call(lambda: meta_grad(ts.params), repeats)["median_s"],
        "fisher_vector_product_s": time_call(lambda: fisher_product(flat), repeats)["median_s"],
        "trpo_update_s": time_call(lambda: update(ts.params), repeats)["median_s"],
        "train_step_s": time_call(lambda: algo.train_step(ts), repeats)["median_s"],
    }
    return phases


if __name__ == "__main__":
    main()
