"""One SB3 PPO policy for all five Oasis agents, through SuperSuit's padding and vector envs.

    python examples/supersuit_ppo.py --timesteps 200000 --users 1000 --seed 0

The agents' spaces differ, so `shared_spaces` maps every action space to one Box, pads the
observations and appends an agent one-hot (see sandbox_rl.training.shared_policy). This is
`sandbox-rl train supersuit` in one short file, with the command's defaults and held-out worlds:
the same flags give the same table; the full entry point adds checkpoints, TensorBoard, config
checks and the rest of PPO's settings (their defaults are the ones used here).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import supersuit as ss
import torch
import tyro
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor

from sandbox_rl.envs import oasis_v0
from sandbox_rl.training.evaluation import evaluate_parallel
from sandbox_rl.training.shared_policy import (make_shared_env, seedable, shared_player,
                                               shared_spaces)


@dataclass
class Args:
    timesteps: int = 200_000
    """agent-steps to train for (five per world step)"""
    users: int = 1000
    """simulated users per world"""
    episode_steps: int = 200
    """steps per training episode"""
    n_envs: int = 2
    """parallel training worlds (each gives five agent rows)"""
    n_steps: int = 128
    """steps per agent row per PPO rollout"""
    batch_size: int = 256
    """PPO minibatch size (at most 5 * n_envs * n_steps)"""
    eval_seeds: tuple[int, ...] = (1000, 1001, 1002)
    """held-out evaluation worlds, one episode each"""
    eval_steps: int = 200
    """steps per evaluation episode"""
    seed: int = 0
    """seed of PPO and of the training worlds (seed .. seed + n_envs - 1)"""


def main() -> None:
    args = tyro.cli(Args, description=__doc__.splitlines()[0])
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
                batch_size=args.batch_size, gamma=0.9, seed=args.seed, device="cpu")
    model.learn(args.timesteps)

    raw = lambda: oasis_v0.parallel_env(num_users=args.users, max_cycles=args.eval_steps)  # noqa: E731
    players = {"learned": (lambda: make_shared_env(args.users, args.eval_steps),
                           shared_player(model)),
               "heuristic": (raw, "heuristic"), "random": (raw, "random")}
    report = evaluate_parallel(players, args.eval_seeds, args.eval_steps, title="shared PPO")
    for agent, row in report.scores.items():
        print(f"{agent:22s} " + "  ".join(f"{p} {s}" for p, s in row.items()))


if __name__ == "__main__":
    main()
