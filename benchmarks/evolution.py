"""Held-out figures of the four evolution strategies, all from the evaluation protocol.

    python benchmarks/evolution.py [--quick] [--strategies ...] [--tasks ...] [--adapters RUN]

Every figure is measured on the registered held-out worlds (``--seeds``, default 1000-1019, all
of them, also with ``--quick``) with the agents' greedy answers (what is deployed), by
``training/protocol.py``: open loop, every arm answers the same env steps of each world and is
scored counterfactually with the step's own draws. Where a figure needs arms that one protocol
run does not hold (pool members, a compressed adapter), the world is played by the protocol's
``play_open`` with the first arm and the other arms' greedy answers to the same observations are
scored by the same ``TaskEpisode.score``.

One JSON line per (strategy, task, metric)::

    {"strategy", "task", "metric", "evolved", "baseline" (what each arm is), "evolved_mean",
     "baseline_mean", "difference", "difference_is", "ci95_low", "ci95_high", "seeds",
     "per_world": {"evolved": [...], "baseline": [...]} (in the order of seeds), "settings"}

``difference`` is the mean over worlds of evolved - baseline (baseline - evolved for bytes: what
is saved) with its 95% Student-t interval (``protocol.paired_difference``).

- gradient_based: ``sandbox-rl train agents``'s trainer (``train_agents``: expert-iteration rounds
  with the world as verifier on training worlds 0-899, the best round on validation worlds kept,
  then TRL PPO kept only if validation rises), ``--minutes`` per task; its own protocol reports
  give trained vs untrained (PEFT's fresh adapter), vs the heuristic and vs random actions.
  ``--adapters RUN`` scores a finished ``train agents`` run instead of training.
  ``--ray-address`` (extra ``rllib``) runs train agents' proposals and its evaluation, or the
  ``--adapters`` reports, on ``--workers`` Ray actors: the same lines (the protocol's worlds
  depend only on their seeds; README, "On a cluster"); the other strategies run here.
- multi_model: ``--pool`` members per task that really differ: member 0 the untrained adapter,
  member 1 the gradient_based trained adapter, member k >= 2 trained from the untrained adapter by
  ``--member-updates`` expert-iteration updates (below) with seed ``--seed + k`` (its own samples
  and training worlds; no PPO, no validation). Every member answers every held-out step; the
  strategy's ``ucb_choice`` picks one member per step online, over the worlds in seed order (its
  statistics carry over from world to world, as in a live run), seeing only the rewards of the
  members it picked. Figures: routing vs member 0, vs the heuristic, vs the best member in
  hindsight (the member with the best mean over all worlds).
- adaptive_compression: the strategy's two steps, separately, on the trained adapters: LoRA rank
  halved by truncated SVD (``TaskAdapters.resize``), reward vs the full-rank adapter (the
  gradient_based trained figure); KV cache in 2 bits vs 4 bits (quanto) with the full-rank
  adapter. The bytes each saves: adapter bytes; KV bytes per cached token times the tokens a
  world's batch caches (prompt tokens + the task's token budget per row, an upper bound), each
  also as a share of the process's resident memory (RSS: psutil, else resource's peak) then.
- meta_learning: two arms take the same expert-iteration updates (the same training states and
  seeds) on ``--meta-tasks`` for ``--meta-iterations`` iterations of ``--inner-updates`` updates
  per task: ``reptile`` starts each task's inner loop from the meta weights and moves them by the
  strategy's ``reptile_step`` (``--meta-step``); ``sequential`` (the baseline) trains straight
  through the same updates without Reptile. Each arm's adapter then takes ``--adapt-updates``
  updates on each ``--meta-targets`` task (the same states for both); held-out reward after
  every update k gives one line per k (reptile vs sequential, paired by world), the last line
  with both curves.

An expert-iteration update (multi_model's members, meta_learning) is one round of
``training/expert_iteration.py`` on ``--update-states`` fresh training states: the greedy answer,
``--update-samples`` samples and the heuristic's answer as proposals, verdict by expected reward
over re-seeded draws, SFT on the winners for ``--update-epochs`` epochs. Unlike ``run_rounds``
it keeps no buffer and no validation choice, so that the two meta arms' updates can be counted.

``--quick`` (explicit flags still win) keeps every held-out world, one step each, and smaller
budgets: tasks behavior_analysis and network_optimization, meta target content_generation
(trend_prediction, the full run's second task and meta target, has no trend to rank at a
world's first step: every arm scores at random's level there); train agents 3 minutes per task
(16 states per round; proposals the greedy and the heuristic's answers, no samples: the agents'
own search is PPO's; 4-step training worlds, validation world 900; PPO from half time, so a
round started before then finishes and PPO still gets an update), multi_model and
adaptive_compression on the first task only, one member update of 8 states (no samples, 2 SFT
epochs); meta_learning three Reptile iterations of such updates and no adaptation update, its
target scored on 8 steps per world (``--meta-steps``: one content_generation post per world is
too noisy a figure), in a process of its own beside the other strategies (``--parallel-meta``;
``--threads`` split between the two). Measured on the 2-core CPU with the embedded model:
``docs/results.md``. The full run (8 steps per world, 10 minutes per task, every strategy on both
tasks, four adaptation updates) needs about 2.5 hours there: it is meant for a GPU.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sandbox_rl.allocator import keep_freed_memory
from sandbox_rl.core.strategies.meta_learning import INNER_STEPS, META_STEP
from sandbox_rl.enums import TaskType

STRATEGIES = ("gradient_based", "multi_model", "adaptive_compression", "meta_learning")
ON_TRAINED = {"gradient_based", "multi_model", "adaptive_compression"}
# Option: (full run, --quick). --quick keeps every held-out world: fewer steps, smaller budgets.
SCALED = {
    "steps": (8, 1),
    "minutes": (10.0, 3.0),
    "samples": (4, 0),
    "states_per_round": (24, 16),
    "ppo_share": (0.2, 0.5),
    "world_steps": (8, 4),
    "validation_seeds": ((900, 901, 902), (900,)),
    "member_updates": (3, 1),
    "update_states": (16, 8),
    "update_samples": (2, 0),
    "update_epochs": (1, 2),
    # --quick's meta target is scored on 8 steps per world (one content_generation post per
    # world is too noisy a figure: docs/results.md) after three Reptile iterations, with no
    # adaptation update, to stay within 20 minutes.
    "meta_iterations": (3, 3),
    "adapt_updates": (4, 0),
    "meta_steps": (None, 8),  # None: --steps
    # meta_learning needs no trained adapter: with the other strategies it can run beside them,
    # in a process of its own (one torch thread each on two cores). Generation, most of its
    # work, gains little from a second thread in one process (a 20-world content_generation
    # evaluation: 199 s of generation at one thread, 164 s in all at two). --quick measured:
    # 17:15 wall with training, meta beside; 16:43 without training (--adapters), in one process.
    "parallel_meta": (False, True),
    # trend_prediction's first step has no trend to rank (its heuristic scores 0.500 there), so
    # --quick's single step per world measures tasks whose first step carries signal.
    "tasks": (["behavior_analysis", "trend_prediction"],
              ["behavior_analysis", "network_optimization"]),
    "meta_targets": (["trend_prediction"], ["content_generation"]),
}
UNTRAINED = "the untrained adapter (PEFT's fresh adapter, B = 0: the base model), greedy"
HEURISTIC = "the task's heuristic action on the same steps"
RANDOM = "uniformly random actions of the task's structured space on the same steps"

# (episode, sampling seed) -> the reward of an arm's answer at every step of the episode
Scorer = Callable[[Any, int], list]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(strategy: str, task: str, metric: str, evolved: Sequence[float],
         baseline: Sequence[float], seeds: Sequence[int], *, evolved_is: str, baseline_is: str,
         settings: dict, cost: bool = False, **extra) -> dict:
    """Print (and return) one figure line: evolved vs baseline paired by world."""
    from sandbox_rl.training.protocol import paired_difference

    evolved, baseline = [float(v) for v in evolved], [float(v) for v in baseline]
    d = paired_difference(baseline, evolved) if cost else paired_difference(evolved, baseline)
    line = {"strategy": strategy, "task": task, "metric": metric, "evolved": evolved_is,
            "baseline": baseline_is, "evolved_mean": _r(np.mean(evolved)),
            "baseline_mean": _r(np.mean(baseline)), "difference": _r(d.mean),
            "difference_is": "baseline - evolved (saved)" if cost else "evolved - baseline",
            "ci95_low": _r(d.low), "ci95_high": _r(d.high), "seeds": [int(s) for s in seeds],
            "per_world": {"evolved": [_r(v) for v in evolved],
                          "baseline": [_r(v) for v in baseline]},
            "settings": settings, **extra}
    print(json.dumps(line), flush=True)
    return line


def _r(value: float) -> float:
    return round(float(value), 5)


def _share(part: float, whole: float) -> float:
    return float(f"{part / whole:.4g}")


# ----------------------------------------------------------------------------- shared machinery
@dataclass
class SameSteps:
    """Per world (in seed order): each arm's reward at every step, and the steps' prompts."""

    rewards: dict[str, list[list[float]]] = field(default_factory=dict)
    observations: list[list[str]] = field(default_factory=list)

    def per_world(self, arm: str) -> list[float]:
        return [float(np.mean(r)) for r in self.rewards[arm]]


def score_on_same_steps(task: str, config, first, others: dict[str, Scorer]) -> SameSteps:
    """Play every world of ``config`` with the protocol (``play_open``, greedy answers of the
    Answerer ``first``: arm "first", plus "heuristic" and "random") and score ``others`` on the
    same steps."""
    from sandbox_rl.training.protocol import BASELINES, play_open

    out = SameSteps()
    for seed in config.seeds:
        run = play_open(task, seed, config, first)
        arms = {"first": run.rewards["agents"], **{b: run.rewards[b] for b in BASELINES},
                **{name: score(run.episode, config.seed) for name, score in others.items()}}
        for arm, rewards in arms.items():
            out.rewards.setdefault(arm, []).append([float(r) for r in rewards])
        out.observations.append([s.observation for s in run.episode.steps])
    return out


def through(adapters, adapter: str, cache_factory=None):
    """The protocol's ``adapter_answerer``, decoding through ``adapter`` whatever the task."""
    from sandbox_rl.training.protocol import adapter_answerer

    return adapter_answerer(adapters, adapter=adapter, cache_factory=cache_factory)


def answers_scored(answer) -> Scorer:
    """A Scorer of an Answerer's greedy answers."""
    from sandbox_rl.agents.task_specs import spec
    from sandbox_rl.training.task_episodes import greedy

    def score(episode, seed: int) -> list[float]:
        task = episode.task.value
        texts = answer(task, greedy(spec(task)), [s.observation for s in episode.steps], seed)
        return [episode.score(i, text) for i, text in enumerate(texts)]
    return score


def training_states(task: str, seed: int, args):
    """Training-world states (seeds 0-899) in ``seed``'s order, as ``train agents`` draws them:
    call with a count."""
    from sandbox_rl.training.agents_trainer import TrainingWorlds

    return TrainingWorlds(task, seed, args.world_steps, args.users)


def round_settings(args, seed: int):
    from sandbox_rl.training.expert_iteration import RoundSettings

    return RoundSettings(samples=args.update_samples, draws=4, epochs=args.update_epochs,
                         seed=seed)


def expert_update(adapters, adapter: str, states, settings, index: int) -> dict:
    """One expert-iteration update of ``adapter`` on ``states`` (see the module docstring)."""
    from sandbox_rl.seeding import derived_seed
    from sandbox_rl.training.expert_iteration import RoundStats, collect_examples, fine_tune

    stats = RoundStats()
    examples = collect_examples(adapters, adapter, states, settings, index, stats)
    if examples:
        stats.sft_loss = fine_tune(adapters, adapter, examples, settings,
                                   derived_seed(settings.seed, adapter, index))
    return {"examples": stats.examples, "from_heuristic": stats.from_heuristic,
            "greedy_reward": _r(stats.greedy_reward), "best_reward": _r(stats.best_reward)}


def process_rss() -> int:
    """The process's resident memory in bytes now (psutil), or its peak where psutil, which the
    project does not require, is missing (``resource``)."""
    try:
        import psutil
    except ImportError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return int(psutil.Process().memory_info().rss)


# ----------------------------------------------------------------------------- trained agents
@dataclass(frozen=True)
class Trained:
    """Task adapters trained by ``train_agents`` (or a finished run's) and the protocol's
    reports of them and of the untrained adapters on the benchmark's worlds."""

    folder: Path
    reports: dict
    summary: dict
    settings: dict


def trained_agents(args, config) -> Trained:
    from sandbox_rl.training.agents_trainer import AgentsConfig, train_agents

    if args.adapters:
        folder = Path(args.adapters)
        folder = folder / "adapters" if (folder / "adapters").is_dir() else folder
        try:
            reports = {"trained": _report(args, config, folder),
                       "untrained": _report(args, config, None)}
        except FileNotFoundError as err:
            sys.exit(f"--adapters {args.adapters}: {err}")
        return Trained(folder, reports, {}, {"adapters": str(folder)})
    cfg = AgentsConfig(tasks=config.tasks, minutes=args.minutes, seed=args.seed, model=args.model,
                       samples=args.samples, states_per_round=args.states_per_round,
                       ppo_share=args.ppo_share, world_steps=args.world_steps, users=args.users,
                       validation_seeds=tuple(args.validation_seeds), eval_seeds=config.seeds,
                       eval_steps=config.steps, threads=args.threads,
                       ray_address=args.ray_address, workers=args.workers,
                       out=str(Path(args.out) / "agents"), overwrite=True, quiet=True)
    result = train_agents(cfg)
    if result["reports"]["trained"].config != config:
        raise RuntimeError("train_agents evaluated other worlds than the benchmark's")
    summary = {task: {"rounds": len(t["rounds"]),
                      "examples_per_round": [r["examples"] for r in t["rounds"]],
                      "validation_untrained": _r(t["validation_untrained"]),
                      "validation_after_rounds": _r(t["validation_after_rounds"]),
                      "ppo_updates": t["ppo"]["updates"], "ppo_kept": t["ppo"].get("kept"),
                      "seconds": round(t["seconds"], 1)} for task, t in result["log"].items()}
    settings = {"trainer": "train_agents", "minutes_per_task": args.minutes,
                "samples": args.samples, "states_per_round": args.states_per_round,
                "ppo_share": args.ppo_share, "world_steps": args.world_steps,
                "validation_seeds": list(args.validation_seeds), "run": cfg.out}
    return Trained(Path(cfg.out) / "adapters", result["reports"], summary, settings)


def _report(args, config, folder: Path | None):
    """The protocol's report of the adapters in ``folder`` (None: untrained), serially or,
    with ``--ray-address``, on Ray (the same report)."""
    if args.ray_address is None:
        from sandbox_rl.training.protocol import evaluate_run

        return evaluate_run(config, folder, args.model)
    from sandbox_rl.training.protocol_ray import evaluate_run_on_ray
    from sandbox_rl.training.ray_runtime import DEFAULT_WORKERS

    return evaluate_run_on_ray(config, folder, args.model, args.ray_address,
                               args.workers or DEFAULT_WORKERS, args.threads)


# ----------------------------------------------------------------------------- gradient_based
def gradient_based(trained: Trained, config, common: dict) -> None:
    after, before = trained.reports["trained"], trained.reports["untrained"]
    evolved_is = ("the adapter trained by train_agents (expert-iteration rounds, then TRL PPO "
                  "kept if validation rose), greedy" if trained.summary else
                  f"the adapter of {trained.folder}, greedy")
    for task in config.tasks:
        agents = after.result(task, "agents")
        settings = {**common, **trained.settings, "training": trained.summary.get(task)}
        for metric, baseline, baseline_is in (
                ("untrained", before.result(task, "agents"), UNTRAINED),
                ("heuristic", after.result(task, "heuristic"), HEURISTIC),
                ("random", after.result(task, "random"), RANDOM)):
            emit("gradient_based", task, f"held_out_reward_trained_vs_{metric}",
                 agents.per_world, baseline.per_world, config.seeds, evolved_is=evolved_is,
                 baseline_is=baseline_is, settings=settings, parse_rate=agents.parse_rate,
                 **({"baseline_parse_rate": baseline.parse_rate} if metric == "untrained"
                    else {}))


# ----------------------------------------------------------------------------- multi_model
def multi_model(args, trained: Trained, config, common: dict, tasks: Sequence[str]) -> None:
    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model
    from sandbox_rl.core.pool import Member, adapter_name
    from sandbox_rl.training.protocol import adapter_answerer

    names = [adapter_name(TaskType(t), k) for t in tasks for k in range(1, args.pool)]
    adapters = TaskAdapters(load_model(args.model), names, LoraSettings(), args.seed)
    for task in tasks:
        members = [Member(TaskType(task), k, adapter_name(TaskType(task), k) if k else None, 1.0)
                   for k in range(args.pool)]
        adapters.load_from(trained.folder / task, members[1].adapter)
        described = [UNTRAINED, "the gradient_based trained adapter, greedy"]
        updates = {}
        for m in members[2:]:
            seed, stream = args.seed + m.index, training_states(task, args.seed + m.index, args)
            updates[m.index] = [expert_update(adapters, m.adapter, stream(args.update_states),
                                              round_settings(args, seed), u)
                                for u in range(args.member_updates)]
            described.append(f"{args.member_updates} expert-iteration update(s) from the untrained "
                             f"adapter with seed {seed} (its own sampling and training worlds), "
                             "greedy")
        played = score_on_same_steps(task, config, adapter_answerer(adapters, untrained=True),
                                     {m.adapter: answers_scored(through(adapters, m.adapter))
                                      for m in members[1:]})
        rewards = [played.rewards["first" if m.index == 0 else m.adapter] for m in members]
        routed, pulls = ucb_routing(members, rewards)
        _multi_model_lines(task, config, common, args, played, rewards, routed, pulls,
                           described, updates)


def ucb_routing(members, rewards: list[list[list[float]]]) -> tuple[list[float], list[int]]:
    """Each world's mean reward of the member ``ucb_choice`` picks at each step, the router
    seeing only the picked member's reward; its statistics carry over from world to world."""
    from sandbox_rl.core.strategies.multi_model import ucb_choice

    for m in members:
        m.reset_stats()
    routed = []
    for world in range(len(rewards[0])):
        chosen = []
        for step in range(len(rewards[0][world])):
            m = ucb_choice(members)
            m.record(rewards[m.index][world][step])
            chosen.append(rewards[m.index][world][step])
        routed.append(float(np.mean(chosen)))
    return routed, [m.pulls for m in members]


def _multi_model_lines(task, config, common, args, played: SameSteps, rewards, routed, pulls,
                       described, updates) -> None:
    per_member = [[float(np.mean(w)) for w in r] for r in rewards]
    best = int(np.argmax([np.mean(p) for p in per_member]))
    settings = {**common, "pool": args.pool, "member_updates": args.member_updates,
                "update_states": args.update_states, "update_samples": args.update_samples,
                "update_epochs": args.update_epochs, "router": "ucb_choice over the worlds "
                "in seed order, statistics carried from world to world"}
    extra = {"members": [{"member": k, "is": described[k], "mean": _r(np.mean(per_member[k])),
                          "per_world": [_r(v) for v in per_member[k]], "pulls": pulls[k],
                          **({"updates": updates[k]} if k in updates else {})}
                         for k in range(len(rewards))]}
    routing_is = f"UCB routing over the {args.pool} members, greedy answers"
    for metric, baseline, baseline_is in (
            ("member0", per_member[0], f"member 0: {UNTRAINED}"),
            ("heuristic", played.per_world("heuristic"), HEURISTIC),
            ("best_member_in_hindsight", per_member[best],
             f"member {best} (the best mean over all worlds, chosen in hindsight)")):
        emit("multi_model", task, f"routing_reward_vs_{metric}", routed, baseline, config.seeds,
             evolved_is=routing_is, baseline_is=baseline_is, settings=settings, **extra)


# ----------------------------------------------------------------------------- adaptive_compression
def adaptive_compression(args, trained: Trained, config, common: dict,
                         tasks: Sequence[str]) -> None:
    from sandbox_rl.agents.kv_cache import KVCacheSettings, cache_factory
    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model
    from sandbox_rl.core.pool import fit_kv_cache

    loaded = load_model(args.model)
    adapters = TaskAdapters(loaded, list(tasks), LoraSettings(), args.seed)
    adapters.load(trained.folder, list(tasks))
    kv = {bits: fit_kv_cache(KVCacheSettings(nbits=bits), loaded) for bits in (4, 2)}

    def kv_scorer(task: str, bits: int) -> Scorer:
        return answers_scored(through(adapters, task, cache_factory(adapters.model.config,
                                                                    kv[bits])))

    for task in tasks:
        rank = adapters.settings(task).rank
        half = f"{task}__half"
        adapters.add(half, adapters.settings(task), copy_from=task)
        adapters.resize(half, max(1, rank // 2))
        played = score_on_same_steps(task, config, through(adapters, half),
                                     {f"kv{b}": kv_scorer(task, b) for b in kv})
        full = trained.reports["trained"].result(task, "agents").per_world
        _rank_lines(task, config, common, adapters, half, rank, played, full)
        _kv_lines(task, config, common, adapters, kv, played)


def _rank_lines(task, config, common, adapters, half, rank, played: SameSteps, full) -> None:
    settings = {**common, "rank": f"{rank}->{adapters.settings(half).rank}",
                "kv_cache": "dense (transformers' DynamicCache)"}
    emit("adaptive_compression", task, "held_out_reward_lora_rank_halved",
         played.per_world("first"), full, config.seeds,
         evolved_is="the trained adapter at half its LoRA rank (truncated SVD), greedy",
         baseline_is="the trained adapter at full rank (the gradient_based figure), greedy",
         settings=settings)
    before, after = adapters.adapter_nbytes(task), adapters.adapter_nbytes(half)
    rss = process_rss()
    emit("adaptive_compression", task, "bytes_lora_rank_halved",
         [after] * len(config.seeds), [before] * len(config.seeds), config.seeds, cost=True,
         evolved_is="adapter bytes at half rank", baseline_is="adapter bytes at full rank",
         settings=settings, rss_bytes=rss, saved_share_of_rss=_share(before - after, rss))


def _kv_lines(task, config, common, adapters, kv, played: SameSteps) -> None:
    from sandbox_rl.agents.task_specs import spec
    from sandbox_rl.core.strategies.adaptive_compression import kv_bytes_per_token

    s = spec(task)
    per_token = {b: kv_bytes_per_token(adapters.model.config, kv[b]) for b in kv}
    settings = {**common, "kv_bits": "4->2", "kv_backend": "quanto",
                "q_group_size": kv[2].q_group_size, "residual_length": kv[2].residual_length,
                "adapter": "the trained adapter at full rank"}
    emit("adaptive_compression", task, "held_out_reward_kv_cache_2_bits",
         played.per_world("kv2"), played.per_world("kv4"), config.seeds,
         evolved_is="KV cache in 2 bits, greedy", baseline_is="KV cache in 4 bits, greedy",
         settings=settings)
    tokens = [sum(len(adapters.tokenizer(s.prompt(adapters.tokenizer, o)).input_ids)
                  + s.sampling.max_new_tokens for o in world) for world in played.observations]
    rss = process_rss()
    saved = [(per_token[4] - per_token[2]) * t for t in tokens]
    emit("adaptive_compression", task, "bytes_kv_cache_2_bits",
         [per_token[2] * t for t in tokens], [per_token[4] * t for t in tokens], config.seeds,
         cost=True, evolved_is="KV bytes of the world's batch at 2 bits",
         baseline_is="KV bytes of the world's batch at 4 bits",
         settings={**settings, "tokens": "prompt tokens + the task's token budget per row"},
         kv_bytes_per_token={str(b): _r(v) for b, v in per_token.items()},
         cached_tokens=tokens, rss_bytes=rss, saved_share_of_rss=_share(np.mean(saved), rss))


# ----------------------------------------------------------------------------- meta_learning
def meta_learning(args, config, common: dict) -> None:
    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model

    adapters = TaskAdapters(load_model(args.model), ["meta", *args.meta_targets], LoraSettings(),
                            args.seed)
    streams = {t: training_states(t, args.seed, args)
               for t in dict.fromkeys([*args.meta_tasks, *args.meta_targets])}
    schedule = [(it, task, j) for it in range(args.meta_iterations) for task in args.meta_tasks
                for j in range(args.inner_updates)]
    states = [streams[task](args.update_states) for _, task, _ in schedule]
    inits, meta_log = meta_initialisations(adapters, schedule, states, args)
    for target in args.meta_targets:
        adapt_states = [streams[target](args.update_states) for _ in range(args.adapt_updates)]
        curves, adapt_log = {}, {}
        for arm, init in inits.items():
            curves[arm], adapt_log[arm] = adapt(adapters, target, init, adapt_states,
                                                len(schedule), config, args)
            log(f"meta_learning {target} {arm}: "
                f"{[round(float(np.mean(c)), 4) for c in curves[arm]]}")
        _meta_lines(target, config, common, args, curves,
                    {arm: {"meta_phase": meta_log[arm], "adaptation": adapt_log[arm]}
                     for arm in inits})


def meta_initialisations(adapters, schedule, states, args) -> tuple[dict, dict]:
    """The ``reptile`` and ``sequential`` arms' weights after the same updates (an update from
    the same weights at the same position is made once and shared)."""
    from sandbox_rl.core.strategies.meta_learning import reptile_step

    settings, memo = round_settings(args, args.seed), {}
    logs: dict[str, list] = {"reptile": [], "sequential": []}

    def update(arm: str, start: dict, position: int) -> dict:
        key = (position, fingerprint(start))
        if key not in memo:
            adapters.load_state("meta", start)
            stats = expert_update(adapters, "meta", states[position], settings, position)
            memo[key] = (adapters.state("meta"), stats)
        weights, stats = memo[key]
        logs[arm].append({"task": schedule[position][1], **stats})
        return weights

    fresh = adapters.state("meta")
    weights = fresh
    for position in range(len(schedule)):
        weights = update("sequential", weights, position)
    meta, position = fresh, 0
    for _ in range(args.meta_iterations):
        adapted = []
        for _task in args.meta_tasks:
            w = meta
            for _ in range(args.inner_updates):
                w = update("reptile", w, position)
                position += 1
            adapted.append(w)
        meta = reptile_step(meta, adapted, args.meta_step)
    return {"reptile": meta, "sequential": weights}, logs


def fingerprint(state: dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def adapt(adapters, target: str, init: dict, states, first_index: int, config, args
          ) -> tuple[list[tuple[float, ...]], list[dict]]:
    """Held-out reward per world of ``target``'s adapter from ``init`` before and after each
    adaptation update (the protocol's greedy agents arm)."""
    from sandbox_rl.training.protocol import adapter_answerer, run_protocol

    adapters.load_state(target, init)
    settings = round_settings(args, args.seed)
    held_out = replace(config, tasks=(target,), steps=args.meta_steps)

    def score() -> tuple[float, ...]:
        report = run_protocol(held_out, adapter_answerer(adapters), "meta", args.model)
        return report.result(target, "agents").per_world

    curve, stats = [score()], []
    for u, chunk in enumerate(states):
        stats.append(expert_update(adapters, target, chunk, settings, first_index + u))
        curve.append(score())
    return curve, stats


def _meta_lines(target, config, common, args, curves: dict, updates: dict) -> None:
    settings = {**common, "steps_per_world": args.meta_steps,
                "meta_tasks": list(args.meta_tasks),
                "meta_iterations": args.meta_iterations, "inner_updates": args.inner_updates,
                "meta_step": args.meta_step, "adapt_updates": args.adapt_updates,
                "update_states": args.update_states, "update_samples": args.update_samples,
                "update_epochs": args.update_epochs}
    means = {arm: [_r(np.mean(c)) for c in curve] for arm, curve in curves.items()}
    for k in range(args.adapt_updates + 1):
        last = k == args.adapt_updates
        emit("meta_learning", target, f"held_out_reward_after_{k}_updates",
             curves["reptile"][k], curves["sequential"][k], config.seeds,
             evolved_is=f"Reptile meta-initialisation, then {k} update(s) on {target}, greedy",
             baseline_is=("the same meta-phase updates on the same tasks and states without "
                          f"Reptile (trained straight through), then {k} update(s) on {target}, "
                          "greedy"),
             settings=settings, adaptation_updates=k,
             **({"curves": means, "updates": updates} if last else {}))


# ----------------------------------------------------------------------------- command line
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smaller budgets and 1 step per world, still every held-out world")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--tasks", nargs="+",
                   help="tasks trained by train_agents (gradient_based and the strategies on it)"
                        + _scaled("tasks"))
    p.add_argument("--multi-model-tasks", nargs="+", default=None,
                   help="tasks of multi_model, among --tasks (default all; --quick: the first)")
    p.add_argument("--compression-tasks", nargs="+", default=None,
                   help="tasks of adaptive_compression, among --tasks (default all; --quick: "
                        "the first)")
    p.add_argument("--model", default="embedded")
    p.add_argument("--adapters", default=None,
                   help="a finished `sandbox-rl train agents` run (or its adapters/) to measure "
                        "instead of training")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="held-out worlds (default the registered 1000-1019)")
    p.add_argument("--steps", type=int, help="env steps per held-out world" + _scaled("steps"))
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    for flag, kind, text in (("minutes", float, "train agents: minutes per task"),
                             ("samples", int, "train agents: samples per state"),
                             ("states-per-round", int, "train agents: states per round"),
                             ("ppo-share", float, "train agents: share of a task's time for PPO"),
                             ("world-steps", int, "steps per training and validation world")):
        p.add_argument(f"--{flag}", type=kind, help=text + _scaled(flag))
    p.add_argument("--validation-seeds", type=int, nargs="+",
                   help="train agents' validation worlds" + _scaled("validation-seeds"))
    p.add_argument("--pool", type=int, default=3, help="multi_model members per task (>= 2)")
    for flag, text in (("member-updates", "updates of the members >= 2"),
                       ("update-states", "training states per expert-iteration update"),
                       ("update-samples", "samples per state of an update"),
                       ("update-epochs", "SFT epochs of an update")):
        p.add_argument(f"--{flag}", type=int, help=text + _scaled(flag))
    p.add_argument("--meta-tasks", nargs="+", default=None,
                   help="Reptile's tasks (default: --tasks that are not --meta-targets, else "
                        "every other task)")
    p.add_argument("--meta-targets", nargs="+",
                   help="tasks the meta-initialisations adapt to" + _scaled("meta-targets"))
    p.add_argument("--meta-iterations", type=int,
                   help="Reptile iterations" + _scaled("meta-iterations"))
    p.add_argument("--inner-updates", type=int, default=INNER_STEPS,
                   help="updates per task of Reptile's inner loop (the strategy's INNER_STEPS)")
    p.add_argument("--meta-step", type=float, default=META_STEP,
                   help="Reptile's outer step (the strategy's META_STEP)")
    p.add_argument("--adapt-updates", type=int,
                   help="updates on each target" + _scaled("adapt-updates"))
    p.add_argument("--meta-steps", type=int,
                   help="env steps per held-out world of the targets' evaluation (default "
                        f"--steps; --quick {SCALED['meta_steps'][1]})"),
    p.add_argument("--threads", type=int, default=2,
                   help="torch threads (with --ray-address: of each Ray worker; with "
                        "--parallel-meta: shared by the two processes, at least one each)")
    p.add_argument("--parallel-meta", action=argparse.BooleanOptionalAction, default=None,
                   help="run meta_learning in a second process beside the other strategies"
                        + _scaled("parallel-meta")),
    p.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT|local",
                   help="gradient_based on Ray (extra rllib): train agents' proposals and "
                        "evaluation, or the --adapters reports, played by --workers actors "
                        "(the same lines as serially); the other strategies stay here")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray actors with --ray-address (default 2)")
    p.add_argument("--out", default="runs/evolution_benchmark")
    args = p.parse_args(argv)
    for name, values in SCALED.items():
        if getattr(args, name) is None:
            setattr(args, name, values[args.quick])
    if args.meta_steps is None:
        args.meta_steps = args.steps
    check(p, args)
    return args


def _scaled(flag: str) -> str:
    full, quick = SCALED[flag.replace("-", "_")]
    return f" (default {full}; --quick {quick})".replace("%", "%%")


def check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Normalise task names and refuse settings the figures cannot be made with."""
    def tasks(values, flag):
        try:
            return list(dict.fromkeys(TaskType.parse(t).value for t in values))
        except ValueError as err:
            p.error(f"{flag}: {err}")

    args.tasks = tasks(args.tasks, "--tasks")
    for name in ("multi_model_tasks", "compression_tasks"):
        chosen = getattr(args, name)
        chosen = tasks(chosen, name) if chosen else args.tasks[:1] if args.quick else args.tasks
        if not set(chosen) <= set(args.tasks):
            p.error(f"--{name.replace('_', '-')} must be among --tasks (they need trained "
                    "adapters)")
        setattr(args, name, chosen)
    args.meta_targets = tasks(args.meta_targets, "--meta-targets")
    # By default Reptile meta-trains on the other tasks: adapting to a task it was meta-trained
    # on would not test adapting to a new one.
    others = [t.value for t in TaskType if t.value not in args.meta_targets]
    args.meta_tasks = tasks(args.meta_tasks or [t for t in args.tasks if t in others]
                            or others, "--meta-tasks")
    if args.seeds is not None and (min(args.seeds) < 1000 or len(set(args.seeds)) <
                                   len(args.seeds)):
        p.error("--seeds: distinct held-out worlds >= 1000")
    if args.pool < 2:
        p.error("--pool: at least 2 members")
    if args.meta_steps < 1:
        p.error("--meta-steps: at least 1 step per world")
    if args.workers is not None and (args.ray_address is None or args.workers < 1):
        p.error("--workers: an integer >= 1, with --ray-address")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    chosen = set(args.strategies)
    meta_beside = None
    if args.parallel_meta and "meta_learning" in chosen and chosen - {"meta_learning"}:
        chosen.discard("meta_learning")
        here = max(1, args.threads // 2)
        meta_beside = MetaProcess(argv, max(1, args.threads - here))
        args.threads = here
    torch.set_num_threads(args.threads)
    try:
        _run(args, chosen)
    except BaseException:
        if meta_beside is not None:
            meta_beside.stop()
        raise
    if meta_beside is not None:
        meta_beside.finish()
        log("meta_learning (beside) done")


def _run(args, chosen: set) -> None:
    from sandbox_rl.training.protocol import DEFAULT_SEEDS, ProtocolConfig

    keep_freed_memory()  # as the command line does (sandbox_rl/allocator.py)
    config = ProtocolConfig(tasks=tuple(args.tasks), seeds=tuple(args.seeds or DEFAULT_SEEDS),
                            steps=args.steps, users=args.users, seed=args.seed)
    common = {"model": args.model, "loop": config.loop, "answers": "greedy",
              "steps_per_world": config.steps, "users": config.users, "recsys": config.recsys,
              "sampling_seed": config.seed, "quick": args.quick}
    start = time.perf_counter()
    trained = trained_agents(args, config) if chosen & ON_TRAINED else None
    if trained is not None:
        log(f"trained agents ready: {time.perf_counter() - start:.0f} s")
    if "gradient_based" in chosen:
        gradient_based(trained, config, common)
    if "multi_model" in chosen:
        multi_model(args, trained, config, common, args.multi_model_tasks)
        log(f"multi_model done: {time.perf_counter() - start:.0f} s")
    if "adaptive_compression" in chosen:
        on_gpu_use_portable_quanto()
        adaptive_compression(args, trained, config, common, args.compression_tasks)
        log(f"adaptive_compression done: {time.perf_counter() - start:.0f} s")
    if "meta_learning" in chosen:
        meta_learning(args, config, common)
        log(f"meta_learning done: {time.perf_counter() - start:.0f} s")


class MetaProcess:
    """meta_learning run by this script in a child process (``--strategies meta_learning``,
    ``threads`` torch threads, the other flags as given), its lines printed here when it ends,
    so they never interleave with this process's."""

    def __init__(self, argv: Sequence[str], threads: int) -> None:
        import subprocess
        import tempfile

        self.lines = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
        # argparse keeps the last value of a repeated flag: these override the caller's.
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *argv, "--strategies",
             "meta_learning", "--threads", str(threads), "--no-parallel-meta"],
            stdout=self.lines)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.lines.close()

    def finish(self) -> None:
        code = self.process.wait()
        self.lines.seek(0)
        sys.stdout.write(self.lines.read())
        sys.stdout.flush()
        self.lines.close()
        if code != 0:
            raise RuntimeError(f"meta_learning's process exited with code {code}")


def on_gpu_use_portable_quanto() -> None:
    """On CUDA, quanto's first use compiles its kernels (minutes): use its portable unpack."""
    if torch.cuda.is_available():
        from gpu_multi_adapter import python_quanto_unpack  # benchmarks/ is on sys.path

        python_quanto_unpack()


if __name__ == "__main__":
    main()
