"""Held-out figures of the evolution strategies, one JSON line per (strategy, task, figure):

    {"strategy", "task", "metric", "evolved_mean", "baseline_mean", "ci95_low", "ci95_high",
     "seeds"}

The interval is the 95% Student-t interval over seeds of the per-seed difference evolved minus
baseline (baseline minus evolved for a cost such as bytes). Every figure is measured on
held-out episodes (``training/task_episodes.py``: seeds 1000+, never trained on), scored by
counterfactual steps of the simulation.

    python benchmarks/evolution.py [--quick] [--strategies multi_model gradient_based ...]

- multi_model: for each held-out seed, every pool member answers every step (member k decodes
  at its own temperature, members 1.. are perturbed adapters), giving a reward matrix R[k, t];
  the strategy's UCB router then picks one member per step online, seeing only the rewards of
  the members it picked. Figure: routing reward vs the best fixed member chosen in hindsight.
- gradient_based: ``training/llm_ppo.py`` trains each task adapter by TRL PPO on training
  seeds; held-out reward and parse rate of the trained vs the untrained adapter.
- adaptive_compression: the strategy's compression step (LoRA rank halved by truncated SVD, KV
  cache 4 -> 2 bits) applied to the PPO-trained adapters: bytes saved and held-out reward kept.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace

import numpy as np
import torch

from sandbox_rl.enums import TaskType


def emit(strategy: str, task: str, metric: str, evolved: list[float], baseline: list[float],
         seeds: list[int], cost: bool = False, **extra) -> None:
    evolved, baseline = np.asarray(evolved, float), np.asarray(baseline, float)
    diff = (baseline - evolved) if cost else (evolved - baseline)
    low, high = ci95(diff)
    print(json.dumps({"strategy": strategy, "task": task, "metric": metric,
                      "evolved_mean": round(float(evolved.mean()), 5),
                      "baseline_mean": round(float(baseline.mean()), 5),
                      "ci95_low": round(low, 5), "ci95_high": round(high, 5), "seeds": seeds,
                      **extra}), flush=True)


def ci95(values: np.ndarray) -> tuple[float, float]:
    from scipy import stats

    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))
    return mean - half, mean + half


# ----------------------------------------------------------------------------- multi_model
def multi_model(args, tasks: list[str]) -> None:
    from sandbox_rl.agents.generation import GenerationRequest, generate_batch
    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model
    from sandbox_rl.core.pool import TEMPERATURE_STEPS, Member, member_generator, member_spec, perturb
    from sandbox_rl.core.strategies.multi_model import ucb_choice
    from sandbox_rl.training.task_episodes import collect_episode

    loaded = load_model(args.model)
    for task_name in tasks:
        task = TaskType(task_name)
        names = [f"{task.value}__{k}" for k in range(args.pool)]
        adapters = TaskAdapters(loaded, names, LoraSettings(rank=8))
        members = [Member(task, k, names[k], TEMPERATURE_STEPS[k % len(TEMPERATURE_STEPS)])
                   for k in range(args.pool)]
        for m in members[1:]:
            perturb(adapters, m.adapter, 0.02, member_generator(args.seed, m))
        routed, best, seeds = [], [], []
        for seed in args.eval_seeds:
            episode = collect_episode(task, seed, args.steps, args.users)
            reward = np.zeros((args.pool, args.steps))
            for t, step in enumerate(episode.steps):
                requests = [GenerationRequest(member_spec(m).prompt(loaded.tokenizer, step.observation),
                                              m.adapter, member_spec(m).sampling) for m in members]
                outs = generate_batch(adapters.model, loaded.tokenizer, requests, seed=seed * 997 + t)
                for m, out in zip(members, outs):
                    reward[m.index, t] = episode.score(t, member_spec(m).answer(step.observation,
                                                                                out.text))
            for m in members:
                m.reset_stats()
            chosen = []
            for t in range(args.steps):
                m = ucb_choice(members)
                m.record(reward[m.index, t])
                chosen.append(reward[m.index, t])
            routed.append(float(np.mean(chosen)))
            best.append(float(reward.mean(axis=1).max()))
            seeds.append(seed)
        emit("multi_model", task.value, "routing_reward_vs_best_fixed", routed, best, seeds,
             ratio=round(float(np.mean(routed) / max(np.mean(best), 1e-9)), 4),
             pool=args.pool, steps=args.steps)
        loaded = load_model(args.model)  # a base without this task's adapters for the next


# ----------------------------------------------------------------------------- gradient / compression
def gradient_and_compression(args, tasks: list[str], strategies: set[str]) -> None:
    from sandbox_rl.training.llm_ppo import LLMPPOConfig, train_llm_ppo

    cfg = LLMPPOConfig(model=args.model, tasks=tuple(tasks), updates=args.updates,
                       prompts_per_update=args.prompts, train_seeds=tuple(args.train_seeds),
                       eval_seeds=tuple(args.eval_seeds), steps=args.steps, users=args.users,
                       learning_rate=args.lr, seed=args.seed, threads=args.threads,
                       out=args.out, quiet=True)
    results = train_llm_ppo(cfg)
    if "gradient_based" in strategies:
        for task, r in results.items():
            emit("gradient_based", task, "held_out_reward", r.trained, r.untrained,
                 list(cfg.eval_seeds), updates=cfg.updates, prompts_per_update=cfg.prompts_per_update)
            emit("gradient_based", task, "parse_rate", [r.trained_parse], [r.untrained_parse],
                 list(cfg.eval_seeds), note="pooled over seeds")
    if "adaptive_compression" in strategies:
        compression(args, cfg, tasks)


def compression(args, cfg, tasks: list[str]) -> None:
    from sandbox_rl.agents.kv_cache import KVCacheSettings, make_cache
    from sandbox_rl.agents.lora import TaskAdapters
    from sandbox_rl.agents.models import load_model
    from sandbox_rl.agents.task_specs import spec
    from sandbox_rl.core.pool import fit_kv_cache
    from sandbox_rl.core.strategies.adaptive_compression import kv_bytes_per_token
    from sandbox_rl.training.task_episodes import collect_episode, evaluate, greedy

    loaded = load_model(args.model)
    adapters = TaskAdapters(loaded, list(tasks))
    adapters.load(f"{cfg.out}/adapters", list(tasks))
    full_kv = fit_kv_cache(KVCacheSettings(nbits=4), loaded)
    low_kv = replace(full_kv, nbits=2)
    for task in tasks:
        episodes = [collect_episode(task, seed, cfg.steps, cfg.users) for seed in cfg.eval_seeds]
        s = greedy(spec(task))

        def run(kv):
            factory = lambda: make_cache(adapters.model.config, kv)  # noqa: E731
            return [evaluate(adapters, task, [e], s, cache_factory=factory).mean_reward
                    for e in episodes]

        rank = adapters.settings(task).rank
        full_bytes, full_reward = adapters.adapter_nbytes(task), run(full_kv)
        adapters.resize(task, max(1, rank // 2))
        low_bytes, low_reward = adapters.adapter_nbytes(task), run(low_kv)
        emit("adaptive_compression", task, "held_out_reward", low_reward, full_reward,
             list(cfg.eval_seeds), rank=f"{rank}->{max(1, rank // 2)}", kv_bits="4->2")
        kv_full, kv_low = (kv_bytes_per_token(adapters.model.config, k) for k in (full_kv, low_kv))
        emit("adaptive_compression", task, "adapter_plus_kv_bytes_at_512_tokens",
             [low_bytes + 512 * kv_low], [full_bytes + 512 * kv_full], list(cfg.eval_seeds),
             cost=True, adapter_bytes=f"{full_bytes}->{low_bytes}",
             kv_bytes_per_token=f"{kv_full:.0f}->{kv_low:.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smaller run (about 20 minutes)")
    p.add_argument("--strategies", nargs="+", default=["multi_model", "gradient_based",
                                                       "adaptive_compression"])
    p.add_argument("--tasks", nargs="+", default=["trend_prediction", "network_optimization"])
    p.add_argument("--model", default="embedded")
    p.add_argument("--pool", type=int, default=3)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--updates", type=int, default=4)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--eval-seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/evolution_benchmark")
    args = p.parse_args()
    if args.quick:
        args.steps, args.updates, args.prompts = min(args.steps, 6), min(args.updates, 2), 4
    torch.set_num_threads(args.threads)
    unknown = set(args.strategies) - {"multi_model", "gradient_based", "adaptive_compression"}
    if unknown:
        sys.exit(f"unknown or not yet measured strategies: {sorted(unknown)}")
    if "multi_model" in args.strategies:
        multi_model(args, args.tasks)
    rest = set(args.strategies) & {"gradient_based", "adaptive_compression"}
    if rest:
        gradient_and_compression(args, args.tasks, rest)


if __name__ == "__main__":
    main()
