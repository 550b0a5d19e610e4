"""The user guide's quick start (快速开始 1-2): a SelfEvolvingConfig, a sandbox, N steps.

Each step all five task agents act in the simulated platform; a task's performance_score is its
reward from the world, and every evolution_interval steps the strategy runs (one evolution step).

    python examples/guide_quickstart.py --model embedded --steps 10 --users 1000 --seed 0
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import tyro

from sandbox_rl.core.self_evolving_oasis import (EvolutionStrategy, SelfEvolvingConfig, TaskType,
                                                 create_self_evolving_oasis)


@dataclass
class Args:
    model: str = "embedded"
    """model of all five task agents: embedded, tiny-llama (random weights, quick), ..."""
    steps: int = 10
    """env steps to simulate"""
    users: int = 1000
    """simulated users"""
    seed: int = 0
    """world and model seed"""
    pool_size: int = 3
    """members (adapters) per task in the model pool"""
    evolution_interval: int = 3
    """env steps between evolution steps"""
    log_dir: str = "runs/guide_quickstart"
    """folder of the sandbox's logs (metrics.jsonl)"""
    threads: int = 2
    """torch CPU threads"""


def main() -> None:
    args = tyro.cli(Args, description=__doc__.splitlines()[0])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = SelfEvolvingConfig(
        evolution_strategy=EvolutionStrategy.MULTI_MODEL,
        enable_lora=True,
        enable_kv_cache_compression=True,
        lora_rank=8,
        lora_alpha=16.0,
        lora_dropout=0.1,
        adaptation_learning_rate=1e-4,
        evolution_interval=args.evolution_interval,
        performance_threshold=0.7,
        model_pool_size=args.pool_size,
        task_distribution={task: args.model for task in TaskType},
        fallback_model=None,  # a model missing from the cache is an error, not a silent swap
        num_users=args.users,
        seed=args.seed,
        log_dir=args.log_dir,
    )
    # The guide's block also passes evolution_strategy= by name next to **config.__dict__, which
    # Python rejects ("multiple values for keyword argument"); the config alone is enough.
    sandbox = create_self_evolving_oasis(**config.__dict__)
    for step in range(args.steps):
        result = sandbox.simulate_step()
        scores = " ".join(f"{task}={r['performance_score']:.3f}"
                          for task, r in result["tasks"].items())
        print(f"step {step + 1}: evolution step {result['evolution_stats']['evolution_step']} "
              f"| {scores}")
    sandbox.close()


if __name__ == "__main__":
    main()
