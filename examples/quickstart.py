"""Quick start: the Gymnasium view and the PettingZoo view of the Oasis platform.

    python examples/quickstart.py --users 1000 --steps 24 --seed 0
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import gymnasium

import sandbox_rl  # noqa: F401  (registers SelfEvolvingOasis-v0)
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.heuristics import HeuristicPolicy


@dataclass
class Args:
    users: int = 1000
    steps: int = 24
    seed: int = 0


def parse_args() -> Args:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in Args().__dict__.items():
        p.add_argument(f"--{name}", type=type(default), default=default)
    return Args(**vars(p.parse_args()))


def single_agent(args: Args) -> float:
    """A random trend predictor in the Gymnasium env; returns its mean reward."""
    env = gymnasium.make("SelfEvolvingOasis-v0", task="trend_prediction",
                         num_users=args.users, max_cycles=args.steps)
    env.reset(seed=args.seed)
    env.action_space.seed(args.seed)
    total, done, steps = 0.0, False, 0
    while not done:
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        total, steps, done = total + reward, steps + 1, terminated or truncated
    return total / steps


def multi_agent(args: Args) -> dict[str, float]:
    """All five heuristic agents in the PettingZoo env; returns each agent's mean reward."""
    env = oasis_v0.parallel_env(num_users=args.users, max_cycles=args.steps, render_mode="ansi")
    obs, _ = env.reset(seed=args.seed)
    policy = HeuristicPolicy(env)
    totals = dict.fromkeys(env.possible_agents, 0.0)
    while env.agents:
        obs, rewards, *_ = env.step(policy(obs))
        for agent, r in rewards.items():
            totals[agent] += r
    print(env.render())
    return {a: v / args.steps for a, v in totals.items()}


def main() -> None:
    args = parse_args()
    print(f"random trend predictor: mean reward {single_agent(args):.3f}")
    for agent, mean in multi_agent(args).items():
        print(f"heuristic {agent:22s} mean reward {mean:.3f}")


if __name__ == "__main__":
    main()
