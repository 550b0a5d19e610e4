"""SB3 PPO on one role of SelfEvolvingOasis-v0, then its held-out reward next to the baselines.

    python examples/sb3_ppo.py --task trend_prediction --timesteps 60000 --users 1000 --seed 0

This is `sandbox-rl train sb3` in one short file, with the command's defaults and held-out
worlds: the same flags give the same table. The full entry point adds checkpoints, TensorBoard,
config checks and the rest of PPO's settings (their defaults are the ones used here).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import tyro
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sandbox_rl.training.evaluation import evaluate_gym, gym_baselines
from sandbox_rl.training.sb3 import TASKS, make_env, to_env_action

Task = Literal[TASKS]  # the task names, so that --help lists them


@dataclass
class Args:
    task: Task = "trend_prediction"
    """the role the learner plays"""
    timesteps: int = 60_000
    """environment steps to train for"""
    users: int = 1000
    """simulated users per world"""
    episode_steps: int = 200
    """steps per training episode"""
    n_envs: int = 4
    """parallel training worlds"""
    n_steps: int = 256
    """steps per world per PPO rollout"""
    batch_size: int = 256
    """PPO minibatch size (at most n_steps * n_envs)"""
    eval_seeds: tuple[int, ...] = (1000, 1001, 1002)
    """held-out evaluation worlds, one episode each"""
    eval_steps: int = 200
    """steps per evaluation episode"""
    seed: int = 0
    """seed of PPO and of the training worlds (seed .. seed + n_envs - 1)"""


def main() -> None:
    args = tyro.cli(Args, description=__doc__.splitlines()[0])
    # Seeding: PPO seeds torch and numpy itself; the worlds are seeds seed .. seed + n_envs - 1.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    venv = make_vec_env(lambda: make_env(args.task, args.users, args.episode_steps),
                        n_envs=args.n_envs, seed=args.seed)
    model = PPO("MlpPolicy", venv, n_steps=args.n_steps, batch_size=args.batch_size,
                gamma=0.9, seed=args.seed, device="cpu")
    model.learn(args.timesteps)

    def learned(env, seed):
        return lambda obs: to_env_action(env.action_space, model.predict(obs, deterministic=True)[0])

    report = evaluate_gym(lambda: make_env(args.task, args.users, args.eval_steps, normalise=False),
                          args.task, {"learned": learned, **gym_baselines(args.task)},
                          args.eval_seeds, args.eval_steps, title=f"SB3 PPO on {args.task}")
    for policy, score in report.scores[args.task].items():
        print(f"{policy:10s} mean reward {score}")


if __name__ == "__main__":
    main()
