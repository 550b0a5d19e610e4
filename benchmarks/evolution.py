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
  seeds; held-out reward and parse rate of the trained vs the untrained adapter, answering
  greedily and sampled as PPO's rollouts are (the policy PPO optimises; ``--eval-samples`` answers
  per step, the same sampling seeds for both adapters). ``--samples-per-prompt``,
  ``--ppo-epochs`` and ``--rollout-temperature`` are llm-ppo's options of the same names;
  ``--trained-run DIR`` scores the adapters a finished ``train llm-ppo`` run saved on
  ``--eval-seeds`` instead of training (more held-out worlds for a run already made).
- adaptive_compression: the strategy's compression step (LoRA rank halved by truncated SVD, KV
  cache 4 -> 2 bits) applied to the PPO-trained adapters: bytes saved and held-out reward kept.
- meta_learning: the strategy's Reptile meta-initialisation (``reptile_step``, inner loop of
  ``--inner-steps`` PPO updates per task from the meta weights, on worlds of the training seeds,
  outer step ``--meta-step``; defaults the strategy's ``INNER_STEPS`` and ``META_STEP``) over
  ``--meta-tasks``; then, on a shifted world (a fixed new topic mix, ``shifted_mix``), an
  adapter of each ``--meta-targets`` task is trained by PPO from the meta-initialisation and
  from PEFT's fresh adapter (the same learner seed for both), evaluated on the held-out episode
  after every update, sampled as in training (``--eval-samples`` answers per step). Figure:
  updates until the held-out reward reaches the target (the fresh adapter's starting reward +
  ``--target-gain``; ``--adapt-updates`` + 1 when never reached), and the reward after the last
  update. ``--meta-dir DIR`` saves the meta-initialisation after every iteration and resumes
  from it (refusing other settings), so meta-training can be spread over several runs; with no
  ``--meta-targets`` the run only meta-trains. Each world's arms are seeded by the world's seed,
  so runs over parts of the held-out worlds (in parallel, say, resuming one ``--meta-dir``)
  give the lines of one run over all of them with ``--combine FILE...`` (their printed lines).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from sandbox_rl.core.strategies.meta_learning import INNER_STEPS, META_STEP
from sandbox_rl.enums import TaskType

STRATEGIES = ("multi_model", "gradient_based", "adaptive_compression", "meta_learning")


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


def shifted_mix() -> tuple[float, ...]:
    """The shifted scenario's topic mix: popularity halving from the last topic to the first
    (concentrated, and in no seed's order by construction)."""
    from sandbox_rl.envs.topics import NUM_TOPICS

    weights = [0.5 ** (NUM_TOPICS - 1 - k) for k in range(NUM_TOPICS)]
    return tuple(w / sum(weights) for w in weights)


def on_gpu_use_portable_quanto() -> None:
    """On CUDA, quanto's first use compiles its kernels (minutes): use its portable unpack."""
    if torch.cuda.is_available():
        from gpu_multi_adapter import python_quanto_unpack  # benchmarks/ is on sys.path

        python_quanto_unpack()


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
        adapters = TaskAdapters(loaded, names, LoraSettings(rank=8), args.seed)
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
    from sandbox_rl.training.llm_ppo import LLMPPOConfig, reevaluate, train_llm_ppo

    if args.trained_run:
        cfg, results = reevaluate(args.trained_run, tuple(args.eval_seeds), args.eval_samples,
                                  args.threads)
        tasks = list(cfg.tasks)
    else:
        cfg = LLMPPOConfig(
            model=args.model, tasks=tuple(tasks), updates=args.updates,
            prompts_per_update=args.prompts, train_seeds=tuple(args.train_seeds),
            eval_seeds=tuple(args.eval_seeds), steps=args.steps, users=args.users,
            learning_rate=args.lr, seed=args.seed, threads=args.threads,
            samples_per_prompt=args.samples_per_prompt, ppo_epochs=args.ppo_epochs,
            rollout_temperature=args.rollout_temperature, eval_samples=args.eval_samples,
            out=args.out, quiet=True)
        results = train_llm_ppo(cfg)
    if "gradient_based" in strategies:
        for task, r in results.items():
            common = dict(updates=cfg.updates, prompts_per_update=cfg.prompts_per_update,
                          lr=cfg.learning_rate, train_seeds=len(cfg.train_seeds),
                          trained_run=args.trained_run, **ppo_figures(cfg))
            emit("gradient_based", task, "held_out_reward_greedy", r.trained, r.untrained,
                 list(cfg.eval_seeds), **common)
            emit("gradient_based", task, "held_out_reward_sampled", r.trained_sampled,
                 r.untrained_sampled, list(cfg.eval_seeds), samples_per_step=cfg.eval_samples,
                 **common)
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


# ----------------------------------------------------------------------------- meta_learning
def meta_learning(args) -> None:
    from dataclasses import replace as with_

    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model
    from sandbox_rl.agents.task_specs import spec
    from sandbox_rl.core.strategies.meta_learning import reptile_step
    from sandbox_rl.training.llm_ppo import episode_update, ppo_settings
    from sandbox_rl.training.ppo import PPOLearner
    from sandbox_rl.training.task_episodes import (collect_episode, evaluate_sampled,
                                                   with_temperature)

    model = load_model(args.model)
    adapters = TaskAdapters(model, ["scratch", "adapt"], LoraSettings(rank=8), args.seed)
    fresh = adapters.state("adapt")  # PEFT's fresh adapter: the common start of both arms
    learner = PPOLearner(adapters, ppo_settings(args.prompts, args.samples_per_prompt,
                                                args.ppo_epochs, args.lr, args.seed))

    def spec_of(task):
        return with_temperature(spec(task), args.rollout_temperature)

    rng = np.random.default_rng(args.seed)
    meta, done = dict(fresh), 0
    if args.meta_dir:
        saved = load_meta_checkpoint(args.meta_dir, meta_settings(args))
        if saved is not None:
            fresh, meta, done, rng_state = saved
            rng.bit_generator.state = rng_state
            log(f"meta-initialisation resumed from {args.meta_dir} after {done} iterations")
    train = {t: [collect_episode(t, seed, args.steps, args.users) for seed in args.train_seeds]
             for t in args.meta_tasks} if done < args.meta_iterations else {}
    start = time.perf_counter()
    for iteration in range(done, args.meta_iterations):
        adapted = []
        for task in args.meta_tasks:
            adapters.load_state("scratch", meta)
            learner.reset_optimizer("scratch")
            for _ in range(args.inner_steps):
                episode_update(learner, "scratch", train[task], args.prompts, rng,
                               spec_of(task))
            adapted.append(adapters.state("scratch"))
        meta = reptile_step(meta, adapted, args.meta_step)
        if args.meta_dir:
            save_meta_checkpoint(args.meta_dir, meta_settings(args), fresh, meta, iteration + 1,
                                 rng.bit_generator.state)
        log(f"meta iteration {iteration + 1}/{args.meta_iterations}: "
            f"{time.perf_counter() - start:.0f} s")
    mix = shifted_mix()
    for task in args.meta_targets:
        s = spec_of(task)
        curves = {"meta": [], "scratch": []}
        for seed in args.eval_seeds:
            held_out = collect_episode(task, seed, args.steps, args.users, topic_mix=mix)
            adapt_train = [collect_episode(task, 2000 + seed, args.steps, args.users,
                                           topic_mix=mix)]
            curve = {}
            for arm, weights in (("scratch", fresh), ("meta", meta)):
                # Both arms of a world share its learner seed and prompt order, drawn from the
                # world's own seed: a world scores the same alone or in any list of worlds.
                adapters.load_state("adapt", weights)
                learner.reset_optimizer("adapt")
                learner.settings = with_(learner.settings, seed=args.seed + seed)
                arm_rng = np.random.default_rng([args.seed, seed])
                def score():
                    return evaluate_sampled(adapters, "adapt", [held_out], s,
                                            args.eval_samples).mean_reward

                rewards = [score()]
                for _ in range(args.adapt_updates):
                    episode_update(learner, "adapt", adapt_train, args.prompts, arm_rng, s)
                    rewards.append(score())
                curve[arm] = rewards
                curves[arm].append([round(r, 4) for r in rewards])
            log(f"{task} seed {seed}: curves {curve}, {time.perf_counter() - start:.0f} s")
        common = dict(meta_tasks=list(args.meta_tasks),
                      meta_iterations=max(done, args.meta_iterations),
                      samples_per_step=args.eval_samples,
                      inner_ppo_updates=args.inner_steps, meta_step=args.meta_step,
                      adapt_updates=args.adapt_updates, target_gain=args.target_gain,
                      prompts_per_update=args.prompts, topic_mix=[round(w, 4) for w in mix],
                      **ppo_figures(args))
        meta_figures(task, list(args.eval_seeds), curves, common)


def meta_figures(task: str, seeds: list[int], curves: dict, common: dict) -> None:
    """The meta_learning lines of one target task from the per-world reward curves (held-out
    reward before and after every adaptation update, per arm): updates to the target, reward
    before adaptation, reward after the last update (which keeps the curves)."""
    target_gain, updates = common["target_gain"], common["adapt_updates"]
    counts = {arm: [] for arm in curves}
    for k in range(len(seeds)):
        target = curves["scratch"][k][0] + target_gain
        for arm, rewards in curves.items():
            reached = [u for u, r in enumerate(rewards[k]) if r >= target - 1e-9]
            counts[arm].append(reached[0] if reached else updates + 1)
    emit("meta_learning", task, "updates_to_target", counts["meta"], counts["scratch"], seeds,
         cost=True, per_seed=counts, **common)
    for metric, at in (("held_out_reward_before_adaptation", 0),
                       ("held_out_reward_after_adaptation", -1)):
        emit("meta_learning", task, metric, [c[at] for c in curves["meta"]],
             [c[at] for c in curves["scratch"]], seeds,
             **({"curves": curves} if at == -1 else {}), **common)


# Keys of a meta_learning line that are its figures, not the settings that made them.
META_FIGURE_KEYS = {"metric", "evolved_mean", "baseline_mean", "ci95_low", "ci95_high", "seeds",
                    "curves", "per_seed", "command"}


def combine_meta(paths: list[str]) -> None:
    """One set of meta_learning lines from runs over parts of the held-out worlds (their
    ``held_out_reward_after_adaptation`` lines carry the curves): the runs must share every
    setting and no world; exits naming the file and setting otherwise."""
    runs = []
    for path in paths:
        try:
            lines = [json.loads(line) for line in open(path) if line.strip().startswith("{")]
        except (OSError, json.JSONDecodeError) as error:
            sys.exit(f"--combine {path}: not a file of JSON lines ({error})")
        runs += [(path, line) for line in lines if line.get("strategy") == "meta_learning"
                 and line.get("metric") == "held_out_reward_after_adaptation"]
    if not runs:
        sys.exit(f"--combine {' '.join(paths)}: no meta_learning lines with curves")
    for task in dict.fromkeys(line["task"] for _, line in runs):
        parts = [(path, line) for path, line in runs if line["task"] == task]
        first_path, first = parts[0]
        settings = {k: v for k, v in first.items() if k not in META_FIGURE_KEYS}
        missing = [k for k in ("target_gain", "adapt_updates") if k not in settings]
        if missing:
            sys.exit(f"--combine {first_path}: its {task} line lacks {missing} (made before "
                     "lines recorded them)")
        seeds, curves = [], {"meta": [], "scratch": []}
        for path, line in parts:
            other = {k: v for k, v in line.items() if k not in META_FIGURE_KEYS}
            changed = sorted(k for k in settings.keys() | other.keys()
                             if settings.get(k) != other.get(k))
            if changed:
                sys.exit(f"--combine {path}: {task} was measured with other {changed} than in "
                         f"{first_path}")
            twice = sorted(set(seeds) & set(line["seeds"]))
            if twice:
                sys.exit(f"--combine {path}: {task} worlds {twice} are in two runs")
            seeds += line["seeds"]
            for arm in curves:
                curves[arm] += line["curves"][arm]
        meta_figures(task, seeds, curves,
                     {k: v for k, v in settings.items() if k not in ("strategy", "task")})

META_CHECKPOINT = "meta_init.safetensors"


def meta_settings(args) -> dict:
    """What a saved meta-initialisation depends on: resuming with other values is refused."""
    keys = ("model", "meta_tasks", "train_seeds", "steps", "users", "prompts",
            "samples_per_prompt", "ppo_epochs", "rollout_temperature", "lr", "seed",
            "inner_steps", "meta_step")
    return {k: getattr(args, k) for k in keys}


def save_meta_checkpoint(folder: str, settings: dict, fresh: dict, meta: dict, iterations: int,
                         rng_state: dict) -> None:
    """The meta-initialisation after ``iterations`` Reptile iterations, with the fresh adapter
    both arms start from and the generator's state: one safetensors file (no pickle) written
    beside its target and renamed, so an interrupted save keeps the previous iteration."""
    import os
    from pathlib import Path

    from safetensors.torch import save_file

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {**{f"fresh/{k}": v.contiguous() for k, v in fresh.items()},
               **{f"meta/{k}": v.contiguous() for k, v in meta.items()}}
    info = {"settings": settings, "iterations": iterations, "rng_state": rng_state}
    tmp = path / f".{META_CHECKPOINT}.tmp"
    save_file(tensors, str(tmp), metadata={"progress": json.dumps(info)})
    os.replace(tmp, path / META_CHECKPOINT)


def load_meta_checkpoint(folder: str, settings: dict):
    """``(fresh, meta, iterations, rng_state)`` saved in ``folder``, None when there is none;
    exits naming the setting when it was made with other settings."""
    from pathlib import Path

    from safetensors import safe_open

    path = Path(folder) / META_CHECKPOINT
    if not path.exists():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            info = json.loads(f.metadata()["progress"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as error:  # safetensors' own errors have no common base class to name
        sys.exit(f"--meta-dir {folder}: {path.name} is not a readable meta-initialisation "
                 f"({type(error).__name__}: {error}); move it away to start again")
    saved = json.loads(json.dumps(settings))  # as JSON stores it (tuples become lists)
    changed = [k for k in saved if info["settings"].get(k) != saved[k]]
    if changed:
        sys.exit(f"--meta-dir {folder}: its meta-initialisation was made with other "
                 + ", ".join(f"--{k.replace('_', '-')} ({info['settings'].get(k)!r}, now "
                             f"{saved[k]!r})" for k in changed))
    parts = {"fresh": {}, "meta": {}}
    for key, value in tensors.items():
        part, name = key.split("/", 1)
        parts[part][name] = value
    return parts["fresh"], parts["meta"], int(info["iterations"]), info["rng_state"]


def ppo_figures(settings) -> dict:
    """The PPO settings (of the arguments or a run's config) a figure line records."""
    return dict(samples_per_prompt=settings.samples_per_prompt, ppo_epochs=settings.ppo_epochs,
                rollout_temperature=settings.rollout_temperature or "task default")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smaller run (about 20 minutes)")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    p.add_argument("--tasks", nargs="+", default=["trend_prediction", "network_optimization"])
    p.add_argument("--model", default="embedded")
    p.add_argument("--pool", type=int, default=3)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--updates", type=int, default=4)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--samples-per-prompt", type=int, default=1,
                   help="PPO rollouts per prompt; > 1: rewards centred on the prompt's mean")
    p.add_argument("--ppo-epochs", type=int, default=1)
    p.add_argument("--trained-run", default=None,
                   help="gradient_based/adaptive_compression: score the adapters of this finished "
                        "`train llm-ppo` run folder on --eval-seeds instead of training")
    p.add_argument("--rollout-temperature", type=float, default=0.0,
                   help="temperature of PPO's rollouts and the sampled evaluation (0: task's)")
    p.add_argument("--eval-samples", type=int, default=4,
                   help="sampled answers per held-out step (decoded as PPO's rollouts)")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--eval-seeds", type=int, nargs="+", default=[1000, 1001, 1002])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--meta-tasks", nargs="+", default=["content_generation",
                                                       "network_optimization",
                                                       "trend_prediction", "user_engagement"])
    p.add_argument("--meta-targets", nargs="*", default=["trend_prediction"],
                   help="tasks adapted on the shifted world (none: only meta-train)")
    p.add_argument("--meta-iterations", type=int, default=4)
    p.add_argument("--inner-steps", type=int, default=INNER_STEPS,
                   help="PPO updates of each task's inner loop (the strategy's INNER_STEPS)")
    p.add_argument("--meta-step", type=float, default=META_STEP,
                   help="Reptile's outer step size (the strategy's META_STEP)")
    p.add_argument("--meta-dir", default=None,
                   help="save the meta-initialisation here after every iteration and resume "
                        "from it (same settings) instead of starting again")
    p.add_argument("--adapt-updates", type=int, default=6)
    p.add_argument("--target-gain", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/evolution_benchmark")
    p.add_argument("--combine", nargs="+", metavar="FILE",
                   help="meta_learning: combine the printed lines of runs over parts of the "
                        "held-out worlds into one set of lines (nothing is run)")
    args = p.parse_args()
    if args.combine:
        combine_meta(args.combine)
        return
    if args.quick:
        args.steps, args.updates, args.prompts = min(args.steps, 6), min(args.updates, 2), 4
        args.meta_iterations, args.adapt_updates = 1, min(args.adapt_updates, 1)
        args.eval_samples = min(args.eval_samples, 1)
        args.meta_tasks = args.meta_tasks[:2]
    torch.set_num_threads(args.threads)
    unknown = set(args.strategies) - set(STRATEGIES)
    if unknown:
        sys.exit(f"unknown strategies: {sorted(unknown)}; expected some of {list(STRATEGIES)}")
    on_gpu_use_portable_quanto()
    start = time.perf_counter()
    if "multi_model" in args.strategies:
        multi_model(args, args.tasks)
        log(f"multi_model done: {time.perf_counter() - start:.0f} s")
    rest = set(args.strategies) & {"gradient_based", "adaptive_compression"}
    if rest:
        gradient_and_compression(args, args.tasks, rest)
        log(f"{' and '.join(sorted(rest))} done: {time.perf_counter() - start:.0f} s")
    if "meta_learning" in args.strategies:
        meta_learning(args)
        log(f"meta_learning done: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
