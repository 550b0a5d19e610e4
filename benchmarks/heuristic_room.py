"""How much room each heuristic leaves, measured on training worlds (never the held-out ones).

Per task and training world, on the same env steps (``training/task_episodes.py``: the other
roles play their heuristics, the measured task is scored counterfactually):

- ``heuristic``: the task's heuristic action;
- ``best_candidate``: of the task's candidate actions (user_engagement: every segment and
  intensity and no campaign; content_generation: every topic and tone; network_optimization:
  every weight vector on a grid), the one with the highest expected reward over ``--draws``
  re-seeded replays of the step, scored on the step's own draws: what a chooser that knows the
  world's expected rewards, but not the step's luck, would get;
- user_engagement only, ``largest_high``: the least tired (to 0.1), then largest segment at
  intensity 3, a rule the heuristic's model of the world misses (in the world, larger segments
  engage more once activated).

One JSON line per (task, arm): the mean over worlds and the paired difference with the heuristic
(95% interval over worlds). docs/results.md has the figures and what came of them.

    python benchmarks/heuristic_room.py [--tasks user_engagement ...] [--seeds 0-19] [--draws 8]
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np

from sandbox_rl.cli import seed_list
from sandbox_rl.envs.topics import NUM_TOPICS
from sandbox_rl.training.protocol import paired_difference
from sandbox_rl.training.task_episodes import TaskEpisode, collect_episode

GRID = (0.0, 0.3, 0.6, 1.0)
CANDIDATES = {
    "user_engagement": [None] + [np.array([s, level]) for s in range(NUM_TOPICS)
                                 for level in (1, 2, 3)],
    "content_generation": [np.array([s, tone]) for s in range(NUM_TOPICS) for tone in range(3)],
    "network_optimization": [np.array(w, dtype=np.float32)
                             for w in itertools.product(GRID, repeat=4)],
}


def largest_high(episode: TaskEpisode, index: int) -> np.ndarray:
    """The least tired (to 0.1), then largest user_engagement segment, at intensity 3."""
    obs = episode.steps[index].snapshot.arrays["obs.user_engagement"]  # what the heuristic read
    size, fatigue = obs[:NUM_TOPICS], obs[NUM_TOPICS:2 * NUM_TOPICS]
    return np.array([int(np.lexsort((-size, np.round(fatigue, 1)))[0]), 3])


def world_means(task: str, seed: int, steps: int, draws: int) -> dict[str, float]:
    episode = collect_episode(task, seed, steps)
    candidates = CANDIDATES[task]
    out: dict[str, list[float]] = {"heuristic": [], "best_candidate": []}
    for i, step in enumerate(episode.steps):
        out["heuristic"].append(episode.score_action(i, step.baselines["heuristic"]))
        expected = episode.expected_scores(i, candidates, draws, seed=1)
        out["best_candidate"].append(episode.score_action(i, candidates[int(np.argmax(expected))]))
        if task == "user_engagement":
            out.setdefault("largest_high", []).append(
                episode.score_action(i, largest_high(episode, i)))
    return {arm: float(np.mean(v)) for arm, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", choices=sorted(CANDIDATES), default=sorted(CANDIDATES))
    p.add_argument("--seeds", nargs="+", type=seed_list, default=[list(range(20))],
                   help="training worlds (below 900): N, A-B or lists, as sandbox-rl evaluate's")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--draws", type=int, default=8)
    args = p.parse_args()
    args.seeds = [s for part in args.seeds for s in part]
    if max(args.seeds) >= 900:
        p.error(f"--seeds must be training worlds below 900, got "
                f"{sorted(s for s in args.seeds if s >= 900)}")
    for task in args.tasks:
        worlds = [world_means(task, s, args.steps, args.draws) for s in args.seeds]
        heuristic = [w["heuristic"] for w in worlds]
        for arm in worlds[0]:
            values = [w[arm] for w in worlds]
            print(json.dumps({"task": task, "arm": arm, "mean": round(float(np.mean(values)), 4),
                              "minus_heuristic": paired_difference(values, heuristic).as_dict(),
                              "seeds": args.seeds,
                              "steps": args.steps, "draws": args.draws}), flush=True)


if __name__ == "__main__":
    main()
