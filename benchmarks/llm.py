"""LLM agent figures: adapter memory, batched vs sequential generation, the memory-bandwidth
limit, parse-success rates of the untrained adapters, and the KV-cache figures.

One JSON line per figure: ``{"metric": NAME, "value": NUMBER, ...}``.

    python benchmarks/llm.py [--model embedded] [--observations 200] [--threads 2] [--skip-kv]
    python benchmarks/llm.py --speed-only [--mix-steps 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import runpy
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from sandbox_rl.agents.generation import GenerationRequest, SamplingSettings, generate_batch
from sandbox_rl.agents.kv_cache import PrefixCacheStore
from sandbox_rl.agents.policy import build_task_adapters
from sandbox_rl.agents.task_specs import spec
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.heuristics import HeuristicPolicy

# Loads the model once with five adapters, or five times with one adapter each, in a fresh
# process, and counts the bytes of every distinct tensor storage the models hold (safetensors
# may memory-map weights, so process RSS would count shared file pages once for all copies).
_MEMORY_PROBE = """
import sys, torch
from sandbox_rl.agents.lora import TaskAdapters
from sandbox_rl.agents.models import load_model
model, mode = sys.argv[1], sys.argv[2]
names = ['content_generation', 'behavior_analysis', 'network_optimization', 'trend_prediction', 'user_engagement']
groups = [names] if mode == 'shared' else [[n] for n in names]
held = [TaskAdapters(load_model(model), g).model for g in groups]
storages = {}
for m in held:
    for t in list(m.parameters()) + list(m.buffers()):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
print(sum(storages.values()))
"""


def emit(metric: str, value: float, **extra) -> None:
    print(json.dumps({"metric": metric, "value": round(float(value), 4), **extra}), flush=True)


def adapter_memory(model: str) -> None:
    grow = {}
    for mode in ("shared", "copies"):
        out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, model, mode], check=True,
                             capture_output=True, text=True).stdout.split()
        grow[mode] = int(out[-1])
    emit("adapter_memory_ratio", grow["copies"] / grow["shared"], model=model,
         one_base_five_adapters_bytes=grow["shared"], five_copies_bytes=grow["copies"])


def memory_bandwidth_bytes_per_s() -> float:
    """Sustained copy bandwidth (bytes read + written per second), best of five, one thread."""
    a = np.ones(64 * 2**20, dtype=np.float64)  # 512 MiB
    b = np.empty_like(a)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = max(best, 2 * a.nbytes / (time.perf_counter() - t))
    return best


def task_observations(count: int, seed: int) -> list[dict[str, tuple[str, np.ndarray]]]:
    """``count`` steps of heuristic-driven play: each agent's prompt (and the behaviour panel)."""
    env = oasis_v0.parallel_env(num_users=1000, max_cycles=count)
    obs, _ = env.reset(seed=seed)
    heuristic = HeuristicPolicy(env)
    steps = []
    while env.agents:
        steps.append({a: (env.text_observation(a), env.tasks["behavior_analysis"].panel.copy())
                      for a in env.agents})
        obs, *_ = env.step(heuristic(obs))
    return steps, env


def real_mix(adapters, steps: list[dict[str, str]]) -> list[list[GenerationRequest]]:
    """Each step's five requests as the LLM policy sends them: the task's own prompt (with its
    fixed system turn marked as the cacheable prefix), token budget, sampling, stops and choices."""
    tok = adapters.tokenizer
    return [[spec(a).request(tok, o, a) for a, o in step.items()] for step in steps]


def generation_speed(adapters, steps: list[dict[str, str]], repeats: int) -> None:
    """The real five-task mix, batched vs sequential, interleaved pair by pair; the sequential
    baseline is the same code path (``generate_batch``) with one request per call."""
    tok, model = adapters.tokenizer, adapters.model
    mixes = real_mix(adapters, steps)
    store = PrefixCacheStore(model, persist=False)
    generate_batch(model, tok, mixes[0], prefix_caches=store)  # warm-up; fills the prefix caches
    for label, caches in (("prefix caches", store), ("no prefix cache", None)):
        pairs, seq_tokens, bat_tokens, longest = [], 0, 0, 0
        for _ in range(repeats):
            for requests in mixes:
                t = time.perf_counter()
                outs = [generate_batch(model, tok, [r], prefix_caches=caches)[0] for r in requests]
                seq = time.perf_counter() - t
                t = time.perf_counter()
                batched = generate_batch(model, tok, requests, prefix_caches=caches)
                pairs.append((seq, time.perf_counter() - t))
                seq_tokens += sum(o.completion_tokens for o in outs)
                bat_tokens += sum(o.completion_tokens for o in batched)
                longest += max(o.completion_tokens for o in batched)
        seq, bat = (statistics.median(x) for x in zip(*pairs))
        emit("batched_speedup", statistics.median(s / b for s, b in pairs), sequential_s=round(seq, 3),
             batched_s=round(bat, 3), pairs=len(pairs), prefill=label,
             workload="the five tasks' prompts, budgets and stops, end to end (median of pairs)",
             tokens_sum_over_max=round(bat_tokens / longest, 3))
        emit("tokens_per_s_batch1", seq_tokens / sum(s for s, _ in pairs), tokens=seq_tokens,
             phase="end to end", prefill=label)
        emit("tokens_per_s_batched", bat_tokens / sum(b for _, b in pairs), tokens=bat_tokens,
             batch=len(mixes[0]), phase="end to end", prefill=label)
    speedup_bound(adapters, mixes, store)


def speedup_bound(adapters, mixes, store) -> None:
    """What bounds the real-mix speedup: prefill is compute-bound, so batching saves none of it;
    only decode steps are shared, and the batch decodes as long as its longest row. Bound =
    (prefill + sum of lengths x batch-1 step) / (prefill + longest x batch-1 step), i.e. as if a
    batched step cost no more than a batch-1 step."""
    tok, model = adapters.tokenizer, adapters.model
    step_s = 1 / decode_rate(adapters, mixes[0][:1])
    prefill, lengths, prompt_tokens = [], [], 0
    for requests in mixes:
        one = [GenerationRequest(r.prompt, r.adapter, SamplingSettings(max_new_tokens=1), r.prefix)
               for r in requests]
        t = time.perf_counter()
        for r in one:
            prompt_tokens += generate_batch(model, tok, [r], prefix_caches=store)[0].prompt_tokens
        prefill.append(time.perf_counter() - t)
        lengths.append([o.completion_tokens for o in generate_batch(model, tok, requests)])
    p = statistics.mean(prefill)
    total, longest = statistics.mean(map(sum, lengths)), statistics.mean(map(max, lengths))
    flops = 2 * sum(q.numel() for n, q in model.named_parameters() if "embed" not in n)
    emit("batched_speedup_bound", (p + total * step_s) / (p + longest * step_s),
         prefill_s=round(p, 3), decode_step_batch1_s=round(step_s, 4),
         tokens_sum=round(total, 1), tokens_longest=round(longest, 1),
         prefill_gflop_per_s=round(flops * prompt_tokens / len(mixes) / p / 1e9, 1),
         note="prefix caches on; prefill FLOPs excluding embeddings and the untied-only head")


def generation_figures(adapters, steps: list[dict[str, str]], repeats: int) -> None:
    generation_speed(adapters, steps, repeats)
    requests = real_mix(adapters, steps[:1])[0]
    equal_work(adapters, requests[0].prompt)
    one, five = decode_rate(adapters, requests[:1]), decode_rate(adapters, requests)
    emit("tokens_per_s_batch1", one, phase="decode")
    emit("tokens_per_s_batched", five, phase="decode", batch=len(requests))
    emit("batched_speedup", five / one, phase="decode", workload="same prompts, 32 tokens each")
    weight_bytes = sum(p.numel() * p.element_size() for p in adapters.model.parameters())
    bandwidth = memory_bandwidth_bytes_per_s()
    # Decoding one token reads every weight once; a batch of five shares that read.
    emit("bandwidth_limit_tokens_per_s", bandwidth / weight_bytes, batch=1,
         bandwidth_gb_s=round(bandwidth / 1e9, 2), weight_bytes=weight_bytes)
    emit("bandwidth_limit_tokens_per_s", len(requests) * bandwidth / weight_bytes,
         batch=len(requests))


def equal_work(adapters, prompt: str, tokens: int = 32) -> None:
    """Five adapters, the same prompt and 32 new tokens each: one batched call vs five calls."""
    tok = adapters.tokenizer
    requests = [GenerationRequest(prompt, name, SamplingSettings(max_new_tokens=tokens))
                for name in adapters.names]
    seq_s, bat_s = [], []
    for _ in range(3):
        t = time.perf_counter()
        for r in requests:
            generate_batch(adapters.model, tok, [r], min_new_tokens=tokens)
        seq_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        generate_batch(adapters.model, tok, requests, min_new_tokens=tokens)
        bat_s.append(time.perf_counter() - t)
    seq, bat = statistics.median(seq_s), statistics.median(bat_s)
    emit("batched_speedup", seq / bat, sequential_s=round(seq, 3), batched_s=round(bat, 3),
         workload=f"five adapters, one prompt, {tokens} tokens each, end to end")


def decode_rate(adapters, requests, tokens: int = 32) -> float:
    """Decode-phase tokens/s: (time for ``tokens`` new tokens - time for 1) per extra token."""
    tok, times = adapters.tokenizer, {}
    for n in (1, tokens):
        fixed = [GenerationRequest(r.prompt, r.adapter, SamplingSettings(max_new_tokens=n))
                 for r in requests]
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            generate_batch(adapters.model, tok, fixed, min_new_tokens=n)
            runs.append(time.perf_counter() - t)
        times[n] = statistics.median(runs)
    return len(requests) * (tokens - 1) / (times[tokens] - times[1])


def parse_success(adapters, steps, env, batch: int, agents: list[str] | None = None) -> None:
    """Share of completions the env's parser turns into an action, per task (untrained adapters)."""
    tok = adapters.tokenizer
    for agent in agents or env.possible_agents:
        task, ok, complete = env.tasks[agent], 0, 0
        for lo in range(0, len(steps), batch):
            chunk = [s[agent] for s in steps[lo: lo + batch]]
            outs = generate_batch(adapters.model, tok,
                                  [spec(agent).request(tok, text, agent) for text, _ in chunk])
            for (text, panel), out in zip(chunk, outs):
                task.panel = panel  # the panel the behaviour prompt listed
                parsed = task.parse(spec(agent).answer(text, out.text))
                ok += parsed.action is not None
                complete += parsed.action is not None and not parsed.reason
        # "complete": parsed with nothing left out (e.g. every panel user predicted).
        emit(f"parse_success_rate_{agent}", ok / len(steps), observations=len(steps),
             complete_rate=round(complete / len(steps), 4))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--observations", type=int, default=200)
    p.add_argument("--batch", type=int, default=20, help="prompts per generate call in parse tests")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mix-steps", type=int, default=3, help="env steps of the real five-task mix timed")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds over those steps")
    p.add_argument("--speed-only", action="store_true", help="only the generation-speed figures")
    p.add_argument("--skip-kv", action="store_true", help="skip the KV-cache figures")
    p.add_argument("--parse-only", nargs="*", metavar="TASK",
                   help="only the parse-success rates (of these tasks; all when none given)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.parse_only is None and not args.speed_only:
        adapter_memory(args.model)
    adapters = build_task_adapters(args.model)
    steps, env = task_observations(max(args.observations, args.mix_steps), args.seed)
    if args.parse_only is not None:
        parse_success(adapters, steps, env, args.batch, args.parse_only or None)
        return
    generation_figures(adapters, [{a: text for a, (text, _) in step.items()}
                                  for step in steps[:args.mix_steps]], args.repeats)
    if args.speed_only:
        return
    parse_success(adapters, steps, env, args.batch)
    if not args.skip_kv:
        sys.argv = ["kv_cache.py"]
        runpy.run_path(str(__file__).replace("llm.py", "kv_cache.py"), run_name="__main__")


if __name__ == "__main__":
    main()
