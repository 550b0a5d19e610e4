"""Mean reward of the heuristic baselines next to a random policy, per task.

All five roles are played by the same policy kind (heuristic or uniformly random actions from
the seeded action spaces) on the same seeds. One JSON line per (recsys, task):
``heuristic_mean``, ``random_mean``, their difference's 95% interval over seeds, ``seeds``,
``steps``.

    python benchmarks/baselines.py [--users 1000] [--steps 200] [--seeds 0 1 2] [--recsys twitter]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import stats

from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.baselines import mean_episode_rewards


def episode_means(policy_kind: str, seed: int, users: int, steps: int, recsys: str) -> dict:
    env = oasis_v0.parallel_env(num_users=users, max_cycles=steps, recsys=recsys)
    return mean_episode_rewards(env, policy_kind, seed)


def ci95(diffs: np.ndarray) -> tuple[float, float]:
    if diffs.size < 2:
        return float(diffs.mean()), float(diffs.mean())
    half = stats.t.ppf(0.975, diffs.size - 1) * diffs.std(ddof=1) / np.sqrt(diffs.size)
    return float(diffs.mean() - half), float(diffs.mean() + half)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--recsys", nargs="+", default=["twitter", "reddit", "random"])
    args = p.parse_args()
    for recsys in args.recsys:
        runs = {kind: [episode_means(kind, s, args.users, args.steps, recsys) for s in args.seeds]
                for kind in ("heuristic", "random")}
        for task in runs["heuristic"][0]:
            h = np.array([r[task] for r in runs["heuristic"]])
            r = np.array([r[task] for r in runs["random"]])
            low, high = ci95(h - r)
            print(json.dumps({"recsys": recsys, "task": task, "heuristic_mean": round(h.mean(), 4),
                              "random_mean": round(r.mean(), 4), "diff_ci95_low": round(low, 4),
                              "diff_ci95_high": round(high, 4), "seeds": args.seeds,
                              "steps": args.steps, "users": args.users}), flush=True)


if __name__ == "__main__":
    main()
