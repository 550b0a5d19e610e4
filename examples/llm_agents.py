"""Five LLM agents, one LoRA adapter each on one shared base, acting in the text-mode env.

Every step, all five prompts go through one batched generation (each row through its task's
adapter); the env parses each completion into the task's action.

    python examples/llm_agents.py --model embedded --steps 3 --users 1000 --seed 0

No command plays this (untrained adapters acting for all five agents in one world). The options
it shares with `sandbox-rl evaluate`, which scores such adapters per task on the held-out worlds,
and with `sandbox-rl train llm-ppo` have their defaults, except --steps (theirs: 8).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import tyro

from sandbox_rl.agents.lora import LoraSettings
from sandbox_rl.agents.policy import LLMPolicy, build_task_adapters
from sandbox_rl.envs import oasis_v0


@dataclass
class Args:
    model: str = "embedded"
    """base model of the adapters: embedded, tiny-llama (random weights, quick), ..."""
    steps: int = 3
    """env steps, one batched generation each"""
    users: int = 1000
    """simulated users"""
    seed: int = 0
    """seed of the world and of the generation"""
    lora_rank: int = 8
    """LoRA rank of the adapters"""
    threads: int = 2
    """torch CPU threads"""


def main() -> None:
    args = tyro.cli(Args, description=__doc__.splitlines()[0])
    torch.set_num_threads(args.threads)
    adapters = build_task_adapters(args.model, LoraSettings(rank=args.lora_rank))
    policy = LLMPolicy(adapters, seed=args.seed)
    env = oasis_v0.parallel_env(obs_mode="text", num_users=args.users, max_cycles=args.steps)
    observations, _ = env.reset(seed=args.seed)
    while env.agents:
        actions = policy(observations)
        observations, rewards, _, _, infos = env.step(actions)
        print(f"--- step {env.num_cycles}")
        for agent, text in actions.items():
            parsed = infos[agent].get("parse_error") or "parsed"
            print(f"{agent:22s} reward {rewards[agent]:.3f} [{parsed}] {text[:70]!r}")


if __name__ == "__main__":
    main()
