r"""Peer comparison: our single-task PPO against brax's PPO on the same MJX environment.

    python -m benchmarks.peer_ppo --env inverted_pendulum --num_envs 64 --unroll 100 --iterations 8

Like with like: both learners get the same environment object (our ``envs.make(env)`` family;
for brax, its wrapped ``brax.envs.Env``), the same number of parallel environments, the same
unroll length (= our horizon), the same env-step budget and brax's control-suite settings on
both sides (our ``ppo`` preset ``brax``, ``algos.ppo.BRAX``: γ 0.97, λ 0.95, Adam 3e-4, clip 0.3,
entropy 1e-2, reward scaling 10, value-loss coefficient 0.5, normalised observations and
advantages, swish networks), with the budget's epochs and minibatches per update (each minibatch
the same number of steps on both sides), a (64, 64) policy and a (64, 64) value network. Reported:
training env steps/s (after compilation) and the mean return of fresh stochastic evaluation
episodes of the initial and the final policy (brax: its ``eval/episode_reward``, 128 episodes;
ours: 128 episodes).

Differences that stay: brax's policy is a tanh-squashed Gaussian with a state-dependent σ
(softplus), ours a Gaussian with a learned state-independent log σ whose actions the family clips;
brax's environments run on (auto-reset, unroll segments), ours restart every episode; brax 0.14.2
drops the time-out step from the loss, ours bootstraps it from V(s_T).

brax runs in a subprocess with a timeout: brax 0.14.2 calls APIs that newer jax
removed. The first attempt runs brax unmodified and records the exception (type,
message, the first line of brax code in the traceback). If it fails on
``jax.device_put_replicated`` only, a second attempt installs a one-function shim
(``device_put_replicated(x, devices)`` = x stacked once per device on a leading axis,
which brax's pmapped functions then place) and is labelled as such. Without brax, our PPO is compared with
the raw physics limit (``benchmarks.physics``) at the same number of environments.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

import jax

from benchmarks.timing import compilation_cache_dir, environment
from benchmarks.training import measure_training

HIDDEN = (64, 64)


def our_overrides(num_envs: int, epochs: int, minibatches: int) -> dict[str, Any]:
    """The ``brax`` preset at the comparison's sizes: one task, ``num_envs`` episodes per update."""
    return {"ppo_epochs": epochs, "ppo_minibatches": minibatches, "value_hidden_sizes": HIDDEN}


def measure_ours(env_name: str, num_envs: int, unroll: int, iterations: int, epochs: int, minibatches: int = 16,
                 repeats: int = 3, eval_episodes: int = 128) -> dict[str, Any]:
    """Our PPO (brax preset): throughput record (with the physics ratio) plus the returns after ``iterations``."""
    return measure_training("ppo", env_name, 1, num_envs, unroll, iterations=min(iterations, 2), repeats=repeats,
                            preset="brax", hidden=HIDDEN, overrides=our_overrides(num_envs, epochs, minibatches),
                            physics_ratio=True, return_after=iterations, eval_episodes=eval_episodes)


def _brax_worker(args: argparse.Namespace) -> None:
    """Runs brax's PPO (inside the subprocess) and writes a JSON result, or the exception."""
    result: dict[str, Any] = {"shim": args.shim}
    try:
        if args.shim:
            install_device_put_replicated_shim()
        import functools

        from brax.training.agents.ppo import networks as ppo_networks
        from brax.training.agents.ppo import train as brax_ppo

        from metarl_jax import envs

        family = envs.make(args.env, episode_length=args.unroll)
        progress: list[dict[str, float]] = []
        start = time.perf_counter()

        def progress_fn(step, metrics):
            progress.append({"step": float(step), "t": time.perf_counter() - start,
                             **{k: float(v) for k, v in metrics.items() if "sps" in k or "episode_reward" in k}})

        from metarl_jax.algos.ppo import BRAX

        network = functools.partial(ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=HIDDEN,
                                    value_hidden_layer_sizes=HIDDEN)
        # One update = batch_size x num_minibatches unrolls = every environment once (as ours: num_envs episodes).
        brax_ppo.train(environment=family.env, num_timesteps=args.num_envs * args.unroll * args.iterations,
                       episode_length=args.unroll, num_envs=args.num_envs,
                       batch_size=args.num_envs // args.minibatches, num_minibatches=args.minibatches,
                       unroll_length=args.unroll, num_updates_per_batch=args.epochs, num_evals=args.num_evals,
                       learning_rate=BRAX["learning_rate"], entropy_cost=BRAX["entropy_coef"],
                       discounting=BRAX["discount"], gae_lambda=BRAX["gae_lambda"],
                       clipping_epsilon=BRAX["ppo_clip"], reward_scaling=BRAX["reward_scale"],
                       vf_loss_coefficient=BRAX["value_loss_coef"], normalize_advantage=BRAX["normalize_advantages"],
                       normalize_observations=BRAX["normalize_observations"], num_eval_envs=128,
                       network_factory=network, progress_fn=progress_fn, seed=0)
        result.update({"status": "ok", "wall_s": time.perf_counter() - start, "progress": progress})
    except Exception as error:  # noqa: BLE001 - the point is to record it
        result.update(exception_record(error))
    with open(args.json_out, "w") as f:
        json.dump(result, f)


def install_device_put_replicated_shim() -> None:
    """brax 0.14 calls ``jax.device_put_replicated``, which jax 0.10 removed: a copy of x per device,
    stacked on a leading axis, is what brax's pmapped functions expect."""
    import jax.numpy as jnp

    def device_put_replicated(x, devices):
        return jax.tree.map(lambda a: jnp.stack([jnp.asarray(a)] * len(devices)), x)

    jax.device_put_replicated = device_put_replicated


def exception_record(error: Exception) -> dict[str, str]:
    """status, type, first message line and the last brax line of the traceback of a failed brax run."""
    frames = traceback.extract_tb(error.__traceback__)
    brax_frames = [f for f in frames if f"{os.sep}brax{os.sep}" in f.filename]
    where = brax_frames[-1] if brax_frames else (frames[-1] if frames else None)
    return {
        "status": "error",
        "exception_type": type(error).__name__,
        "exception_message": str(error).splitlines()[0][:500] if str(error) else "",
        "where": (f"{where.filename.split('site-packages' + os.sep)[-1]}:{where.lineno}: {where.line}"
                  if where else ""),
    }


def run_brax(env_name: str, num_envs: int, unroll: int, iterations: int, epochs: int, shim: bool,
             timeout_s: float, num_evals: int = 5, minibatches: int = 16) -> dict[str, Any]:
    """brax's PPO in a subprocess; returns its JSON result (status ok / error / timeout)."""
    return run_worker("benchmarks.peer_ppo", ["--env", env_name, "--num_envs", str(num_envs), "--unroll", str(unroll),
                                               "--iterations", str(iterations), "--epochs", str(epochs),
                                               "--minibatches", str(minibatches), "--num_evals", str(num_evals)],
                      shim, timeout_s, "brax PPO")


def run_worker(module: str, args: list[str], shim: bool, timeout_s: float, what: str) -> dict[str, Any]:
    """``python -m module --brax_worker args`` in a subprocess: its JSON result (status ok / error / timeout)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "brax.json")
        command = [sys.executable, "-m", module, "--brax_worker", *args, "--json_out", out]
        if shim:
            command.append("--shim")
        if compilation_cache_dir():
            command += ["--compilation_cache", compilation_cache_dir()]
        start = time.perf_counter()
        try:
            proc = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": "timeout", "shim": shim, "exception_type": "TimeoutExpired",
                    "exception_message": f"{what} did not finish within {timeout_s:.0f} s"}
        if not os.path.exists(out):
            lines = (proc.stderr or proc.stdout or "no output").strip().splitlines()
            return {"status": "error", "shim": shim, "exception_type": "SubprocessError",
                    "exception_message": lines[-1][:500] if lines else f"exit status {proc.returncode}"}
        with open(out) as f:
            result = json.load(f)
        result["subprocess_s"] = time.perf_counter() - start
        return result


def brax_attempts(env_name: str, num_envs: int, unroll: int, iterations: int, epochs: int,
                  brax_timeout_s: float = 300, try_shim: bool = True, minibatches: int = 16) -> list[dict[str, Any]]:
    """brax unmodified; if that fails on ``device_put_replicated`` only, again with the shim."""
    attempts = [run_brax(env_name, num_envs, unroll, iterations, epochs, False, brax_timeout_s,
                         minibatches=minibatches)]
    if (try_shim and attempts[0]["status"] == "error"
            and "device_put_replicated" in attempts[0].get("exception_message", "")):
        attempts.append(run_brax(env_name, num_envs, unroll, iterations, epochs, True, brax_timeout_s,
                                 minibatches=minibatches))
    return attempts


def compare(env: str, num_envs: int, unroll: int, iterations: int, epochs: int = 4, repeats: int = 3,
            brax_timeout_s: float = 300, try_shim: bool = True, brax_env: str | None = None,
            attempts: list[dict[str, Any]] | None = None, minibatches: int = 16,
            eval_episodes: int = 128) -> list[dict]:
    """Records: ours (with its physics ratio) and brax's attempt(s).

    ``brax_env`` runs brax on another family than ours (the quick test sizes use a cheap
    point family for ours); ``attempts`` passes brax results already obtained (run.py
    starts them in the background in --quick mode).
    """
    brax_env = brax_env or env
    ours = measure_ours(env, num_envs, unroll, iterations, epochs, minibatches, repeats, eval_episodes)
    ours["benchmark"] = "peer_ppo"
    ours["learner"] = "metarl_jax ppo (brax preset: value MLP, minibatches, normalised obs)"
    ours["status"] = "measured"
    ours["ppo_epochs"], ours["minibatches"] = epochs, minibatches
    # Like brax's: the evaluation episodes' return of the initial and of the final policy.
    ours["train_first_return"], ours["train_final_return"] = ours["first_return"], ours["final_return"]
    ours["first_return"], ours["final_return"] = ours["eval_first_return"], ours["eval_final_return"]
    records = [ours]
    if attempts is None:
        attempts = brax_attempts(brax_env, num_envs, unroll, iterations, epochs, brax_timeout_s, try_shim,
                                 minibatches)
    for attempt in attempts:
        record: dict[str, Any] = {
            "benchmark": "peer_ppo",
            "learner": "brax ppo" + (" + device_put_replicated shim" if attempt.get("shim") else " (unmodified)"),
            "env": brax_env,
            "parallel_envs": num_envs,
            "horizon": unroll,
            "hidden": list(HIDDEN),
            "ppo_epochs": epochs,
            "minibatches": minibatches,
            "status": attempt["status"],
            "device": ours["device"],
        }
        record.update(brax_attempt_figures(attempt, ours))
        records.append(record)
    return records


def brax_attempt_figures(attempt: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """A brax training attempt's figures from its progress log (or its error), beside ``ours``.

    The last epoch's training/sps excludes compilation (with the PPO shim the SECOND epoch compiles
    again, its inputs now carrying pmap's output sharding, hence >= 3 epochs there).
    """
    if attempt["status"] != "ok":
        return {k: attempt.get(k, "") for k in ("exception_type", "exception_message", "where")}
    out: dict[str, Any] = {}
    trained = [p for p in attempt["progress"] if "training/sps" in p]
    evals = [p for p in attempt["progress"] if "eval/episode_reward" in p]
    if trained:
        out["train_env_steps_per_s"] = trained[-1]["training/sps"]
        out["training_sps_per_epoch"] = [p["training/sps"] for p in trained]
        out["ratio_to_ours"] = trained[-1]["training/sps"] / ours["train_env_steps_per_s"]
    if evals:
        out["first_return"] = evals[0]["eval/episode_reward"]
        out["final_return"] = evals[-1]["eval/episode_reward"]
        out["budget_env_steps"] = evals[-1]["step"]
    out["budget_wall_s"] = attempt["wall_s"]  # includes brax's compilation and evaluations
    return out


def main(argv: list[str] | None = None) -> list[dict] | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="inverted_pendulum")
    parser.add_argument("--num_envs", type=int, default=64)
    parser.add_argument("--unroll", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=10, help="PPO updates in the env-step budget")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--minibatches", type=int, default=16, help="per epoch; must divide --num_envs")
    parser.add_argument("--num_evals", type=int, default=5,
                        help="brax evaluations; num_evals - 1 training epochs (>= 3: the first two may compile)")
    parser.add_argument("--timeout", type=float, default=300)
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
    records = compare(args.env, args.num_envs, args.unroll, args.iterations, args.epochs,
                      brax_timeout_s=args.timeout, minibatches=args.minibatches)
    print(json.dumps({"environment": environment(), "results": records}, indent=2))
    return records


if __name__ == "__main__":
    main()
