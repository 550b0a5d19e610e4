"""The user guide's complete example (示例代码/完整示例), with flags instead of constants.

A multi_model sandbox runs --steps steps, saves its state under --out (the guide: ./data) and
prints the guide's final table in the guide's words (total steps, network users and density,
evolution step, model pool size).

    python examples/guide_complete.py --model embedded --steps 20 --out runs/guide_complete
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
    steps: int = 20
    """env steps to simulate"""
    users: int = 1000
    """simulated users"""
    seed: int = 0
    """world and model seed"""
    pool_size: int = 5
    """members (adapters) per task in the model pool"""
    evolution_interval: int = 3
    """env steps between evolution steps"""
    out: str = "runs/guide_complete"
    """folder of the saved state (final_state/) and the logs (logs/)"""
    threads: int = 2
    """torch CPU threads"""


def main() -> None:
    args = tyro.cli(Args, description=__doc__.splitlines()[0])
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    sandbox = create_self_evolving_oasis(
        evolution_strategy="multi_model",
        enable_lora=True,
        enable_kv_cache_compression=True,
        model_pool_size=args.pool_size,
        evolution_interval=args.evolution_interval,
        num_users=args.users,
        seed=args.seed,
        task_distribution={task: args.model for task in TaskType},
        fallback_model=None,
        log_dir=str(Path(args.out) / "logs"),
    )
    results = []
    for step in range(args.steps):
        print(f"执行步骤 {step + 1}...")
        result = sandbox.simulate_step()
        results.append(result)
        if step % 5 == 0:
            evolution_stats = result["evolution_stats"]
            network_stats = result["network_state"]
            print(f"  进化步骤: {evolution_stats['evolution_step']}")
            print(f"  网络用户: {network_stats['total_users']}")
            print(f"  网络密度: {network_stats['network_density']:.3f}")

    saved = sandbox.save_state(Path(args.out) / "final_state")
    final_stats = sandbox.get_network_stats()
    evolution_stats = sandbox.evolving_llm.get_evolution_stats()
    sandbox.close()

    print("\n=== 最终结果 ===")
    print(f"总步骤: {len(results)}")
    print(f"网络用户: {final_stats['total_users']}")
    print(f"网络密度: {final_stats['network_density']:.3f}")
    print(f"进化步骤: {evolution_stats['evolution_step']}")
    print(f"模型池大小: {evolution_stats['model_pool_size']}")
    print(f"状态已保存: {saved} ({Path(args.out) / 'final_state'})")


if __name__ == "__main__":
    main()
