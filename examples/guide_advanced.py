"""The user guide's advanced features (高级功能): state, statistics, process_task.

After --steps steps the sandbox is saved under --out and loaded into a fresh one, which prints
its network and evolution statistics and answers one content-generation prompt directly
(process_task: scored against the world, which does not advance).

    python examples/guide_advanced.py --model embedded --steps 3 --out runs/guide_advanced
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from sandbox_rl.core.self_evolving_oasis import TaskType, create_self_evolving_oasis


@dataclass
class Args:
    model: str = "embedded"
    """model of all five task agents: embedded, tiny-llama (random weights, quick), ..."""
    steps: int = 3
    """env steps before the state is saved"""
    users: int = 1000
    """simulated users"""
    seed: int = 0
    """world and model seed"""
    evolution_interval: int = 3
    """env steps between evolution steps"""
    out: str = "runs/guide_advanced"
    """folder of the saved state (state/) and the logs (logs/)"""
    threads: int = 2
    """torch CPU threads"""


def main() -> None:
    args = tyro.cli(Args, description=__doc__.splitlines()[0])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    options = dict(evolution_interval=args.evolution_interval, num_users=args.users,
                   seed=args.seed, task_distribution={task: args.model for task in TaskType},
                   fallback_model=None, log_dir=str(Path(args.out) / "logs"))
    sandbox = create_self_evolving_oasis(**options)
    for _ in range(args.steps):
        sandbox.simulate_step()

    # 1. State: save, then load into a fresh sandbox (built on the same model, so that building
    # it does not load the default one; load_state replaces its config by the saved one).
    save_path = Path(args.out) / "state"
    print(f"save_state({str(save_path)!r}) -> {sandbox.save_state(save_path)}")
    sandbox.close()
    sandbox = create_self_evolving_oasis(**options)
    print(f"fresh sandbox load_state -> {sandbox.load_state(save_path)} "
          f"(at step {sandbox.step_count})")

    # 2. Monitoring.
    network_stats = sandbox.get_network_stats()
    print(f"users: {network_stats['total_users']}, posts: {network_stats['total_posts']}, "
          f"network density: {network_stats['network_density']:.3f}")
    evolution_stats = sandbox.evolving_llm.get_evolution_stats()
    print(f"evolution step: {evolution_stats['evolution_step']}, "
          f"model pool size: {evolution_stats['model_pool_size']}")
    for task, perf in evolution_stats["model_performances"].items():
        print(f"  {task:22s} {perf['model_name']} recent mean {perf['recent_mean']}")

    # 3. One task answered directly.
    result = sandbox.evolving_llm.process_task(TaskType.CONTENT_GENERATION,
                                               "Generate a post about AI trends",
                                               {"context": "social media"})
    print(f"task result: {result['response'].text!r}")
    print(f"performance score: {result['performance_score']:.3f}")
    sandbox.close()


if __name__ == "__main__":
    main()
