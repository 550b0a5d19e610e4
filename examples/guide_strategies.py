"""The user guide's four evolution strategies (进化策略), one per run: what each one did.

multi_model replaces a task's worst pool member by a perturbed copy of its best;
adaptive_compression halves or doubles LoRA ranks and KV-cache bits against
performance_threshold; gradient_based runs TRL PPO on each task's incumbent adapter;
meta_learning updates a Reptile initialisation and restarts each task's worst member from it.

    python examples/guide_strategies.py --strategy adaptive_compression --steps 6 --seed 0
    python examples/guide_strategies.py --strategy gradient_based --evolution-interval 3
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import tyro

from sandbox_rl.core.self_evolving_oasis import (EvolutionStrategy, TaskType,
                                                 create_self_evolving_oasis)

Strategy = Literal[tuple(s.value for s in EvolutionStrategy)]  # so that --help lists them


@dataclass
class Args:
    strategy: Strategy = "multi_model"
    """evolution strategy"""
    model: str = "embedded"
    """model of all five task agents: embedded, tiny-llama (random weights, quick), ..."""
    steps: int = 6
    """env steps to simulate"""
    evolution_interval: int = 2
    """env steps between evolution steps"""
    users: int = 1000
    """simulated users"""
    seed: int = 0
    """world and model seed"""
    pool_size: int = 3
    """members (adapters) per task in the model pool"""
    performance_threshold: float = 0.7
    """adaptive_compression: a task's mean score at or above it halves its LoRA rank"""
    log_dir: str = "runs/guide_strategies"
    """folder of the sandbox's logs (metrics.jsonl)"""
    threads: int = 2
    """torch CPU threads"""


def main() -> None:
    args = tyro.cli(Args, description=__doc__.splitlines()[0])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    sandbox = create_self_evolving_oasis(
        evolution_strategy=args.strategy, model_pool_size=args.pool_size,
        evolution_interval=args.evolution_interval, num_users=args.users, seed=args.seed,
        performance_threshold=args.performance_threshold,
        task_distribution={task: args.model for task in TaskType}, fallback_model=None,
        log_dir=args.log_dir)
    for _ in range(args.steps):
        result = sandbox.simulate_step()
        stats = result["evolution_stats"]
        print(f"--- step {result['step']} (evolution step {stats['evolution_step']})")
        for task, r in result["tasks"].items():
            print(f"{task:22s} score {r['performance_score']:.3f} adapter {r['adapter']}")
        for event in result["events"]:
            details = ", ".join(f"{k}={v}" for k, v in event.items() if k != "type")
            print(f"  event {event['type']}: {details}")
    stats = sandbox.evolving_llm.get_evolution_stats()
    counters = {k: v for k, v in stats["strategy"].items() if not isinstance(v, dict)}
    print(f"{stats['evolution_strategy']}: {stats['evolution_step']} evolution steps, "
          f"{stats['events']} events; {counters}")
    sandbox.close()


if __name__ == "__main__":
    main()
