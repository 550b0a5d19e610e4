"""Five LLM agents, one LoRA adapter each on one shared base, acting in the text-mode env.

Every step, all five prompts go through one batched generation (each row through its task's
adapter); the env parses each completion into the task's action.

    python examples/llm_agents.py --model embedded --steps 3 --users 1000 --seed 0
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from sandbox_rl.agents.lora import LoraSettings
from sandbox_rl.agents.policy import LLMPolicy, build_task_adapters
from sandbox_rl.envs import oasis_v0


@dataclass
class Args:
    model: str = "embedded"
    steps: int = 3
    users: int = 1000
    seed: int = 0
    lora_rank: int = 8
    threads: int = 2


def parse_args() -> Args:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in Args().__dict__.items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=type(default), default=default)
    return Args(**vars(p.parse_args()))


def main() -> None:
    args = parse_args()
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
