"""Environment throughput: one JSON line per world size.

Runs the PettingZoo env with the five heuristic agents at the default activation, one core
(``torch`` is not involved; numpy/BLAS threads are pinned to 1 through threadpoolctl when it is
installed, else through the environment variables set before numpy loads).

Keys: users, env_steps_per_s, user_steps_per_s (users x env steps per second, comparable across
sizes), reset_s, step_s (mean wall time of one env step), peak_rss_gb (of this process so far).

    python benchmarks/env_throughput.py [--sizes 1000 10000 100000 1000000] [--steps 24]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

from sandbox_rl.envs import oasis_v0  # noqa: E402
from sandbox_rl.envs.heuristics import HeuristicPolicy  # noqa: E402


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is KiB


def measure(users: int, steps: int, seed: int) -> dict:
    env = oasis_v0.parallel_env(num_users=users, max_cycles=steps)
    t0 = time.perf_counter()
    obs, _ = env.reset(seed=seed)
    reset_s = time.perf_counter() - t0
    policy = HeuristicPolicy(env)
    t0 = time.perf_counter()
    while env.agents:
        obs, *_ = env.step(policy(obs))
    elapsed = time.perf_counter() - t0
    return {
        "users": users,
        "env_steps_per_s": round(steps / elapsed, 3),
        "user_steps_per_s": round(users * steps / elapsed),
        "reset_s": round(reset_s, 3),
        "step_s": round(elapsed / steps, 4),
        "peak_rss_gb": round(peak_rss_gb(), 3),
        "steps": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=24, help="env steps per size (24 = one day)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for users in args.sizes:
        print(json.dumps(measure(users, args.steps, args.seed)), flush=True)


if __name__ == "__main__":
    main()
