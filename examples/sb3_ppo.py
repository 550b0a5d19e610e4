"""SB3 PPO on one role of SelfEvolvingOasis-v0, then its held-out reward next to the baselines.

    python examples/sb3_ppo.py --task trend_prediction --timesteps 20000 --users 1000 --seed 0

The full entry point (checkpoints, TensorBoard, config checks) is `sandbox-rl train sb3`.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sandbox_rl.training.evaluation import evaluate_gym, gym_baselines
from sandbox_rl.training.sb3 import make_env, to_env_action


@dataclass
class Args:
    task: str = "trend_prediction"
    timesteps: int = 20_000
    users: int = 1000
    episode_steps: int = 200
    n_envs: int = 4
    n_steps: int = 256
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
    # Seeding: PPO seeds torch and numpy itself; the worlds are seeds seed .. seed + n_envs - 1.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    venv = make_vec_env(lambda: make_env(args.task, args.users, args.episode_steps),
                        n_envs=args.n_envs, seed=args.seed)
    model = PPO("MlpPolicy", venv, n_steps=args.n_steps, batch_size=min(256, args.n_steps),
                gamma=0.9, seed=args.seed, device="cpu")
    model.learn(args.timesteps)

    def learned(env, seed):
        return lambda obs: to_env_action(env.action_space, model.predict(obs, deterministic=True)[0])

    held_out = [10_000 + args.seed + i for i in range(args.eval_episodes)]  # unseen worlds
    report = evaluate_gym(lambda: make_env(args.task, args.users, args.eval_steps, normalise=False),
                          args.task, {"learned": learned, **gym_baselines(args.task)}, held_out,
                          args.eval_steps, title=f"SB3 PPO on {args.task}")
    for policy, score in report.scores[args.task].items():
        print(f"{policy:10s} mean reward {score}")


if __name__ == "__main__":
    main()
