"""One SB3 PPO policy for all five Oasis agents, through SuperSuit's padding and vector envs.

    python examples/supersuit_ppo.py --timesteps 50000 --users 1000 --seed 0

The agents' spaces differ, so `shared_spaces` maps every action space to one Box, pads the
observations and appends an agent one-hot (see sandbox_rl.training.shared_policy). The full
entry point is `sandbox-rl train supersuit`.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

import numpy as np
import supersuit as ss
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor

from sandbox_rl.envs import oasis_v0
from sandbox_rl.training.evaluation import evaluate_parallel
from sandbox_rl.training.shared_policy import (make_shared_env, seedable, shared_player,
                                               shared_spaces)


@dataclass
class Args:
    timesteps: int = 50_000
    users: int = 1000
    episode_steps: int = 200
    n_envs: int = 2
    n_steps: int = 128
    eval_episodes: int = 3
    eval_steps: int = 200
    seed: int = 0


def parse_args() -> Args:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in Args().__dict__.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    return Args(**vars(p.parse_args()))


def main() -> None:
    args = parse_args()
    # Seeding: PPO seeds torch, numpy and the worlds (seed .. seed + n_envs - 1).
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    env = shared_spaces(oasis_v0.parallel_env(num_users=args.users, max_cycles=args.episode_steps))
    venv = ss.concat_vec_envs_v1(ss.pettingzoo_env_to_vec_env_v1(env), args.n_envs,
                                 num_cpus=0, base_class="stable_baselines3")
    # seedable(): SuperSuit's SB3 wrapper cannot take PPO's seed by itself.
    model = PPO("MlpPolicy", VecMonitor(seedable(venv)), n_steps=args.n_steps,
                batch_size=min(256, 5 * args.n_envs * args.n_steps), gamma=0.9, seed=args.seed,
                device="cpu")
    model.learn(args.timesteps)

    held_out = [10_000 + args.seed + i for i in range(args.eval_episodes)]
    raw = lambda: oasis_v0.parallel_env(num_users=args.users, max_cycles=args.eval_steps)  # noqa: E731
    players = {"learned": (lambda: make_shared_env(args.users, args.eval_steps),
                           shared_player(model)),
               "heuristic": (raw, "heuristic"), "random": (raw, "random")}
    report = evaluate_parallel(players, held_out, args.eval_steps, title="shared PPO")
    for agent, row in report.scores.items():
        print(f"{agent:22s} " + "  ".join(f"{p} {s}" for p, s in row.items()))


if __name__ == "__main__":
    main()
