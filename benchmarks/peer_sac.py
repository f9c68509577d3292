r"""Peer comparison: our ``sac`` against brax's SAC (``brax.training.agents.sac``) on the same MJX environment.

    python -m benchmarks.peer_sac --env inverted_pendulum --num_envs 16 --env_steps 16000

Both learners get the same environment (our family; for brax, the ``brax.envs.Env`` it wraps),
the same number of parallel environments, episode length, batch size, network (``HIDDEN``, ReLU,
twin Q), discount 0.99, Adam 3e-4 for actor, critic and temperature, τ 0.005, α starting at 1,
no observation normalisation, and the same env-step budget, with as many gradient steps per
actor step (one step of every environment) as there are environments: one gradient step per
env step, as in Haarnoja et al. Reported: training env steps/s after compilation and the
return of the deterministic (mean-action) policy after the budget.

Honest differences that remain: brax's target entropy is −½·dim(A) (ours the paper's −dim(A));
brax drops truncated transitions from the critic loss (its auto-reset overwrites s′), ours
bootstraps them from the true s′; brax's evaluation runs its own ``num_eval_envs`` episodes,
ours ``eval_num_tasks`` episodes.

brax runs in a subprocess (``benchmarks.peer_ppo.run_worker``): unmodified first, recording the
exception; if it fails on ``jax.device_put_replicated`` only, again with peer_ppo's one-function
shim.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from typing import Any

import jax
import numpy as np

from benchmarks import peer_ppo
from benchmarks.offpolicy import _COMPILED, measure_offpolicy
from benchmarks.timing import environment

HIDDEN = (64, 64)
BATCH = 256


def our_overrides(num_envs: int, episode_length: int, env_steps: int, epochs: int, hidden=HIDDEN,
                  batch_size: int = BATCH) -> dict[str, Any]:
    """Our SAC's config for the comparison: one actor step and ``num_envs`` gradient steps per cycle."""
    cycles = max(1, env_steps // (num_envs * epochs))
    return dict(num_envs=num_envs, rollout_steps=num_envs, train_steps=num_envs, epoch_cycles=cycles,
                batch_size=batch_size, hidden_sizes=tuple(hidden), episode_length=episode_length,
                buffer_size=max(env_steps, batch_size), eval_num_tasks=16)


def measure_ours(env_name: str, num_envs: int, episode_length: int, env_steps: int, epochs: int,
                 repeats: int = 2, hidden=HIDDEN, batch_size: int = BATCH) -> dict[str, Any]:
    """Our SAC in ``epochs`` iterations covering ``env_steps``: throughput and the deterministic return after."""
    overrides = our_overrides(num_envs, episode_length, env_steps, epochs, hidden, batch_size)
    record = measure_offpolicy("sac", env_name, overrides, iterations=1, repeats=repeats)
    family, algo, _, _, compiled, _ = _COMPILED[("sac", env_name, None, tuple(sorted(overrides.items())))]
    tasks = family.task_set("val", algo.config.eval_num_tasks)
    state = jax.jit(algo.init)(jax.random.key(0))
    first = algo.evaluate(state, tasks, jax.random.key(1))
    start = time.perf_counter()
    for _ in range(epochs):
        state, metrics = compiled(state)
    jax.block_until_ready(state)
    wall = time.perf_counter() - start
    final = algo.evaluate(state, tasks, jax.random.key(1))
    record.update({"benchmark": "peer_sac", "learner": "metarl_jax sac", "status": "measured",
                   "parallel_envs": num_envs, "episode_length": episode_length,
                   "budget_env_steps": float(metrics["time/env_steps"]), "budget_wall_s": wall,
                   "first_return": float(np.mean(first.returns)), "final_return": float(np.mean(final.returns))})
    return record


def _brax_worker(args: argparse.Namespace) -> None:
    result: dict[str, Any] = {"shim": args.shim}
    try:
        if args.shim:
            peer_ppo.install_device_put_replicated_shim()
        from brax.training.agents.sac import networks as sac_networks
        from brax.training.agents.sac import train as brax_sac

        from metarl_jax import envs

        family = envs.make(args.env)
        progress: list[dict[str, float]] = []
        start = time.perf_counter()

        def progress_fn(step, metrics):
            progress.append({"step": float(step), "t": time.perf_counter() - start,
                             **{k: float(v) for k, v in metrics.items() if "sps" in k or "episode_reward" in k}})

        network = functools.partial(sac_networks.make_sac_networks, hidden_layer_sizes=HIDDEN)
        brax_sac.train(environment=family.env, num_timesteps=args.env_steps, episode_length=args.episode_length,
                       num_envs=args.num_envs, num_eval_envs=16, learning_rate=3e-4, discounting=0.99,
                       batch_size=BATCH, num_evals=args.num_evals, normalize_observations=False, tau=0.005,
                       min_replay_size=0, max_replay_size=1_000_000, grad_updates_per_step=args.num_envs,
                       deterministic_eval=True, network_factory=network, progress_fn=progress_fn, seed=0)
        result.update({"status": "ok", "wall_s": time.perf_counter() - start, "progress": progress})
    except Exception as error:  # noqa: BLE001 - the point is to record it
        result.update(peer_ppo.exception_record(error))
    with open(args.json_out, "w") as f:
        json.dump(result, f)


def brax_attempts(env_name: str, num_envs: int, episode_length: int, env_steps: int, epochs: int,
                  brax_timeout_s: float = 600, try_shim: bool = True) -> list[dict[str, Any]]:
    """brax unmodified; if that fails on ``device_put_replicated`` only, again with the shim.

    brax's ``num_evals`` = epochs + 1 (an evaluation before training); the last epoch's ``training/sps``
    excludes compilation (with the shim the second epoch compiles again, so use >= 3 epochs)."""
    args = ["--env", env_name, "--num_envs", str(num_envs), "--episode_length", str(episode_length),
            "--env_steps", str(env_steps), "--num_evals", str(epochs + 1)]
    attempts = [peer_ppo.run_worker("benchmarks.peer_sac", args, False, brax_timeout_s, "brax SAC")]
    if (try_shim and attempts[0]["status"] == "error"
            and "device_put_replicated" in attempts[0].get("exception_message", "")):
        attempts.append(peer_ppo.run_worker("benchmarks.peer_sac", args, True, brax_timeout_s, "brax SAC"))
    return attempts


def compare(env: str, num_envs: int, episode_length: int, env_steps: int, epochs: int = 3, repeats: int = 2,
            brax_timeout_s: float = 600, try_shim: bool = True, brax_env: str | None = None, hidden=HIDDEN,
            batch_size: int = BATCH, attempts: list[dict[str, Any]] | None = None) -> list[dict]:
    """Records: ours and brax's attempt(s); ``brax_env``: brax on another family (the quick sizes); ``attempts``:
    brax results already obtained (run.py starts them in the background in --quick mode)."""
    ours = measure_ours(env, num_envs, episode_length, env_steps, epochs, repeats, hidden, batch_size)
    records = [ours]
    brax_env = brax_env or env
    if attempts is None:
        attempts = brax_attempts(brax_env, num_envs, episode_length, env_steps, epochs, brax_timeout_s, try_shim)
    for attempt in attempts:
        record: dict[str, Any] = {
            "benchmark": "peer_sac",
            "learner": "brax sac" + (" + device_put_replicated shim" if attempt.get("shim") else " (unmodified)"),
            "env": brax_env, "parallel_envs": num_envs, "episode_length": episode_length, "hidden": list(HIDDEN),
            "batch_size": BATCH, "status": attempt["status"], "device": ours["device"],
        }
        record.update(peer_ppo.brax_attempt_figures(attempt, ours))
        records.append(record)
    return records


def main(argv: list[str] | None = None) -> list[dict] | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="inverted_pendulum")
    parser.add_argument("--num_envs", type=int, default=16)
    parser.add_argument("--episode_length", type=int, default=1000)
    parser.add_argument("--env_steps", type=int, default=16_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num_evals", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--brax_worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shim", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json_out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--compilation_cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    if args.brax_worker:
        _brax_worker(args)
        return None
    records = compare(args.env, args.num_envs, args.episode_length, args.env_steps, args.epochs,
                      brax_timeout_s=args.timeout)
    print(json.dumps({"environment": environment(), "results": records}, indent=2))
    return records


if __name__ == "__main__":
    main()
