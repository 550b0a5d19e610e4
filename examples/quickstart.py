"""Quick start: the Gymnasium view and the PettingZoo view of the Oasis platform.

    python examples/quickstart.py --users 1000 --steps 24 --seed 0

The PettingZoo half mirrors `sandbox-rl simulate` (every role played by its heuristic, posts
given real tweet text; the same defaults), so its mean rewards are the command's; `--no-tweets`
matches `simulate --no-tweets`. The Gymnasium half plays random trend predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium
import tyro

import sandbox_rl  # noqa: F401  (registers SelfEvolvingOasis-v0)
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.heuristics import HeuristicPolicy


@dataclass
class Args:
    users: int = 1000
    """simulated users"""
    steps: int = 24
    """steps, one simulated hour each"""
    seed: int = 0
    """seed of both worlds and of the random actions"""
    tweets: bool = True
    """give the PettingZoo view's posts real tweet text from the corpus, as `simulate` does"""


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
    env = oasis_v0.parallel_env(num_users=args.users, max_cycles=args.steps,
                                attach_tweets=args.tweets, render_mode="ansi")
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
    args = tyro.cli(Args, description=__doc__.splitlines()[0])
    print(f"random trend predictor: mean reward {single_agent(args):.3f}")
    for agent, mean in multi_agent(args).items():
        print(f"heuristic {agent:22s} mean reward {mean:.3f}")


if __name__ == "__main__":
    main()
