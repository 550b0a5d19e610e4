"""RLlib multi-agent PPO on the Oasis PettingZoo env, one RLModule per agent (extra `rllib`).

    python examples/rllib_ppo.py --iterations 10 --num-env-runners 1 --seed 0
    python examples/rllib_ppo.py --address auto ...     # on a running Ray cluster

The full entry point (checkpoints, TensorBoard, config checks) is `sandbox-rl train rllib`.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

import numpy as np
import ray
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.tune.registry import register_env

from sandbox_rl.envs import oasis_v0
from sandbox_rl.training.evaluation import evaluate_parallel
from sandbox_rl.training.rllib import make_rllib_env, module_player


@dataclass
class Args:
    iterations: int = 10
    users: int = 1000
    episode_steps: int = 200
    num_env_runners: int = 1
    train_batch_size: int = 2000
    eval_episodes: int = 3
    eval_steps: int = 200
    seed: int = 0
    address: str = ""  # empty: start Ray locally


def parse_args() -> Args:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in Args().__dict__.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    return Args(**vars(p.parse_args()))


def main() -> None:
    args = parse_args()
    # Seeding: RLlib seeds each env runner with seed + its index (worlds and torch).
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    ray.init(address=args.address or None, include_dashboard=False, log_to_driver=False)
    register_env("oasis", make_rllib_env)
    agents = oasis_v0.parallel_env().possible_agents
    config = (PPOConfig()
              .environment("oasis", env_config={"num_users": args.users,
                                                "max_cycles": args.episode_steps})
              .multi_agent(policies=set(agents), policy_mapping_fn=lambda agent, *_, **__: agent)
              .rl_module(rl_module_spec=MultiRLModuleSpec(
                  rl_module_specs={a: RLModuleSpec() for a in agents}))
              .env_runners(num_env_runners=args.num_env_runners)
              .training(train_batch_size_per_learner=args.train_batch_size,
                        minibatch_size=min(250, args.train_batch_size), gamma=0.9)
              .debugging(seed=args.seed, log_level="ERROR"))
    algo = config.build_algo()
    for i in range(args.iterations):
        result = algo.train()["env_runners"]
        print(f"iteration {i + 1}: env steps {result['num_env_steps_sampled_lifetime']}, "
              f"episode return {result.get('episode_return_mean', float('nan')):.2f}")

    held_out = [10_000 + args.seed + i for i in range(args.eval_episodes)]
    raw = lambda: oasis_v0.parallel_env(num_users=args.users, max_cycles=args.eval_steps)  # noqa: E731
    modules = {a: algo.get_module(a) for a in agents}
    players = {"learned": (raw, module_player(modules, raw())),
               "heuristic": (raw, "heuristic"), "random": (raw, "random")}
    report = evaluate_parallel(players, held_out, args.eval_steps, title="RLlib PPO")
    algo.stop()
    ray.shutdown()
    for agent, row in report.scores.items():
        print(f"{agent:22s} " + "  ".join(f"{p} {s}" for p, s in row.items()))


if __name__ == "__main__":
    main()
