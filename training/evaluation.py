"""Held-out evaluation of trained policies next to the random and heuristic baselines.

Every policy plays the same worlds: one episode per evaluation seed, scored by its mean reward per
step; a score is the mean over seeds with a 95% Student-t interval. The entry points print the
result as a rich table and save it as JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats

from sandbox_rl.envs.baselines import mean_episode_rewards
from sandbox_rl.envs.heuristics import heuristic_action

Act = Callable[[Any], Any]
# Given the env (after its seeded reset) and the evaluation seed, the policy to play it with.
ActFactory = Callable[[Any, int], Act]
BASELINES = ("heuristic", "random")


@dataclass(frozen=True)
class Score:
    """One policy's mean reward per step on each evaluation seed."""

    per_seed: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_seed))

    @property
    def half_width(self) -> float:
        """Half the 95% Student-t interval of the mean over seeds (0 for a single seed)."""
        n = len(self.per_seed)
        if n < 2:
            return 0.0
        sem = float(np.std(self.per_seed, ddof=1)) / math.sqrt(n)
        return float(stats.t.ppf(0.975, n - 1) * sem)

    def __str__(self) -> str:
        return _cell(self)


@dataclass(frozen=True)
class EvalReport:
    """Scores per agent (row) and policy (column) on the held-out seeds."""

    title: str
    seeds: tuple[int, ...]
    steps: int
    scores: dict[str, dict[str, Score]]

    def as_dict(self) -> dict:
        def score(s: Score) -> dict:
            return {"mean": s.mean, "ci95_half_width": s.half_width, "per_seed": list(s.per_seed)}

        return {"title": self.title, "seeds": list(self.seeds), "steps": self.steps,
                "scores": {agent: {policy: score(s) for policy, s in row.items()}
                           for agent, row in self.scores.items()},
                "paired_differences": {agent: {f"learned - {b}": score(d)
                                               for b, d in self.differences(agent).items()}
                                       for agent in self.scores}}

    def differences(self, agent: str) -> dict[str, Score]:
        """Learned minus each baseline, seed by seed (the same worlds, so the pairing is fair)."""
        row = self.scores[agent]
        if "learned" not in row:
            return {}
        learned = row["learned"].per_seed
        return {b: Score(tuple(x - y for x, y in zip(learned, row[b].per_seed)))
                for b in BASELINES if b in row}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")

    def table(self):
        """A rich Table: one row per agent, mean ± 95% half-width per policy and difference."""
        policies = list(next(iter(self.scores.values())))
        table = Table(title=self.title,
                      caption=f"mean reward per step, {self.steps} steps per episode; mean ± 95% "
                              f"interval over held-out seeds {', '.join(map(str, self.seeds))} "
                              "(differences paired by seed)")
        table.add_column("agent", no_wrap=True, min_width=max(map(len, self.scores)))
        for policy in policies:
            table.add_column(policy, justify="right")
        diff_names = list(self.differences(next(iter(self.scores))))
        for baseline in diff_names:
            table.add_column(f"learned -\n{baseline}", justify="right")
        for agent, row in self.scores.items():
            diffs = self.differences(agent)
            # Mean over the interval on two lines, so the table fits an 80-column terminal.
            table.add_row(agent, *(_cell(row[p], "\n") for p in policies),
                          *(_cell(diffs[b], "\n", signed=True) for b in diff_names))
        return table

    def print(self, console=None) -> None:
        if console is None:
            console = Console()
        console.print(self.table())


def episode_mean_reward(env, player: ActFactory, seed: int) -> float:
    """One episode of a Gymnasium env from ``reset(seed)``; the mean reward per step."""
    obs, _ = env.reset(seed=seed)
    act = player(env, seed)
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        total, steps, done = total + float(reward), steps + 1, terminated or truncated
    return total / max(steps, 1)


def gym_baselines(task: str) -> dict[str, ActFactory]:
    """The heuristic and uniformly random (seeded by the evaluation seed) players of ``task``."""
    def random(env, seed: int) -> Act:
        space = env.action_space
        space.seed(seed)
        return lambda obs: space.sample()

    return {"heuristic": lambda env, seed: lambda obs: heuristic_action(task, obs),
            "random": random}


def evaluate_gym(make_env: Callable[[], Any], task: str, players: Mapping[str, ActFactory],
                 seeds: Sequence[int], steps: int, title: str) -> EvalReport:
    """Score each player of the Gymnasium env's learner role on the same seeded worlds."""
    scores: dict[str, Score] = {}
    for name, factory in players.items():
        env = make_env()
        try:
            scores[name] = Score(tuple(episode_mean_reward(env, factory, s) for s in seeds))
        finally:
            env.close()
    return EvalReport(title, tuple(seeds), steps, {task: scores})


# Maps a function over items, keeping their order: the builtin map (serial) or ray_map.
WorldMap = Callable[[Callable[[Any], Any], Sequence[Any]], Sequence[Any]]


def evaluate_parallel(players: Mapping[str, tuple[Callable[[], Any], Callable[[dict], dict] | str]],
                      seeds: Sequence[int], steps: int, title: str,
                      map_worlds: WorldMap | None = None) -> EvalReport:
    """Score multi-agent players of the PettingZoo env on the same seeded worlds.

    ``players`` maps a name to (env factory, policy or ``"heuristic"`` / ``"random"``): a learned
    policy may need the env wrapped as in training, while the baselines act on the raw env.
    Every (player, world) is played apart from the others, serially or by ``map_worlds``
    (``training.ray_runtime.ray_map``: one Ray task each); a world depends only on its seed,
    so both give the same scores.
    """
    jobs = [(make_env, policy, seed) for make_env, policy in players.values() for seed in seeds]
    played = list((map_worlds or _serial)(play_world, jobs))
    runs = {name: played[i * len(seeds):(i + 1) * len(seeds)] for i, name in enumerate(players)}
    agents = list(played[0])
    scores = {a: {name: Score(tuple(r[a] for r in per_seed)) for name, per_seed in runs.items()}
              for a in agents}
    return EvalReport(title, tuple(seeds), steps, scores)


def play_world(job: tuple[Callable[[], Any], Callable[[dict], dict] | str, int]
               ) -> dict[str, float]:
    """One (env factory, policy, seed) world: each agent's mean reward per step."""
    make_env, policy, seed = job
    env = make_env()
    try:
        return mean_episode_rewards(env, policy, seed)
    finally:
        env.close()


def _serial(function: Callable[[Any], Any], items: Sequence[Any]) -> list:
    return [function(item) for item in items]


def _cell(score: Score, sep: str = " ", signed: bool = False) -> str:
    return f"{score.mean:{'+' if signed else ''}.3f}{sep}±{score.half_width:.3f}"
