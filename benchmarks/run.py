r"""``make bench``: every benchmark in one command.

    python -m benchmarks.run            # quick CPU sizes
    python -m benchmarks.run --full     # the papers' sizes (use a GPU)

Prints a table and writes ``benchmarks/results/<device>-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os

from benchmarks.maml_throughput import measure_maml
from benchmarks.timing import environment

QUICK = {"tasks": 8, "episodes": 10, "horizon": 100, "iterations": 2, "repeats": 3}
FULL = {"tasks": 40, "episodes": 20, "horizon": 100, "iterations": 3, "repeats": 5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="paper sizes (MAML: 40 tasks x 20 episodes x 100)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    env = environment()
    results = [measure_maml(**(FULL if args.full else QUICK))]
    try:
        from benchmarks import physics
    except ImportError:
        physics = None
    if physics is not None and hasattr(physics, "measure_physics"):
        for family in ("point_corner", "wheeled"):
            for num_envs in ((1, 128, 1024, 8192) if args.full else (1, 16, 128)):
                results.append(physics.measure_physics(family, num_envs, 100, 3))
    os.makedirs(args.out, exist_ok=True)
    name = f"{env['device'].split(':')[0]}-{env['date']}.json"
    with open(os.path.join(args.out, name), "w") as f:
        json.dump({"environment": env, "full": args.full, "results": results}, f, indent=2)
    print(json.dumps(env))
    for r in results:
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    print(f"wrote {os.path.join(args.out, name)}")


if __name__ == "__main__":
    main()
