"""RLlib multi-agent PPO on the Oasis PettingZoo env, one RLModule per agent (extra `rllib`).

    python examples/rllib_ppo.py --iterations 20 --num-env-runners 1 --seed 0
    python examples/rllib_ppo.py --address auto ...     # on a running Ray cluster

This is `sandbox-rl train rllib` in one short file, with the command's defaults and held-out
worlds: 20 iterations of 2,000 env steps are the command's 40,000 env steps. The full entry point
adds checkpoints, TensorBoard and config checks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
import tyro

from sandbox_rl.envs import oasis_v0
from sandbox_rl.training.evaluation import evaluate_parallel
from sandbox_rl.training.rllib import make_rllib_env, module_player


@dataclass
class Args:
    iterations: int = 20
    """training iterations, train_batch_size env steps each"""
    users: int = 1000
    """simulated users per world"""
    episode_steps: int = 200
    """steps per training episode"""
    num_env_runners: int = 1
    """remote env runners (0: sample in the driver)"""
    train_batch_size: int = 2000
    """env steps per training iteration"""
    minibatch_size: int = 250
    """PPO minibatch size (agent steps of one module; at most train_batch_size)"""
    num_epochs: int = 10
    """PPO epochs per iteration"""
    learning_rate: float = 3e-4
    """Adam learning rate"""
    eval_seeds: tuple[int, ...] = (1000, 1001, 1002)
    """held-out evaluation worlds, one episode each"""
    eval_steps: int = 200
    """steps per evaluation episode"""
    seed: int = 0
    """seed of RLlib and of the training worlds"""
    address: str = ""
    """address of a running Ray cluster (e.g. auto); empty: start Ray locally"""


def main() -> None:
    args = tyro.cli(Args, description=__doc__.splitlines()[0])
    # Ray loads once the flags are parsed, so that --help answers without the extra.
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.tune.registry import register_env

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
              .training(lr=args.learning_rate, gamma=0.9, num_epochs=args.num_epochs,
                        train_batch_size_per_learner=args.train_batch_size,
                        minibatch_size=args.minibatch_size)
              .debugging(seed=args.seed, log_level="ERROR"))
    algo = config.build_algo()
    for i in range(args.iterations):
        result = algo.train()["env_runners"]
        print(f"iteration {i + 1}: env steps {result['num_env_steps_sampled_lifetime']}, "
              f"episode return {result.get('episode_return_mean', float('nan')):.2f}")

    raw = lambda: oasis_v0.parallel_env(num_users=args.users, max_cycles=args.eval_steps)  # noqa: E731
    modules = {a: algo.get_module(a) for a in agents}
    players = {"learned": (raw, module_player(modules, raw())),
               "heuristic": (raw, "heuristic"), "random": (raw, "random")}
    report = evaluate_parallel(players, args.eval_seeds, args.eval_steps, title="RLlib PPO")
    algo.stop()
    ray.shutdown()
    for agent, row in report.scores.items():
        print(f"{agent:22s} " + "  ".join(f"{p} {s}" for p, s in row.items()))


if __name__ == "__main__":
    main()
