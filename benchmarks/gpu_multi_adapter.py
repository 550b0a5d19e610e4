"""GPU figures at real size: a Mistral-7B architecture (random bf16 weights) with five task LoRA
adapters, batched multi-adapter generation speed, and KV-cache bytes at 4k tokens.

Random weights: no checkpoint can be fetched here, and speed and cache bytes depend on the
shapes, not the values (greedy decoding is forced to its full length with ``min_new_tokens``).
``greedy_agreement_with_dense`` of the compressed caches means little on random weights (their
logits are nearly flat, so any perturbation moves the arg-max); the perplexity cost of compression
is measured on the embedded model by ``benchmarks/kv_cache.py``.
One JSON line per figure: ``{"metric": NAME, "value": NUMBER, ...}``.

    python benchmarks/gpu_multi_adapter.py             # on a CUDA device, about 3 minutes
    python benchmarks/gpu_multi_adapter.py --tiny      # shapes scaled down, any device (smoke test)

Modes timed (tokens/s counts generated tokens of all rows):
    base        PEFT's ``disable_adapter()`` (measured on an H200: slower than ``fused``, since
                decoding there is bound by per-layer Python and kernel launches, not by bytes,
                and PEFT's forward does more Python per layer than the fused one)
    fused       one call, row i through adapter i, as ``generate_batch`` runs it in eval mode
                (``agents/fused_lora.py``: two ``bmm`` per LoRA layer)
    peft        one call through PEFT's own ``adapter_names=`` (a Python loop over adapters)
    sequential  five calls of one row each, one adapter active per call
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from transformers import AutoModelForCausalLM, DynamicCache, MistralConfig

from sandbox_rl.agents.fused_lora import fused_adapters
from sandbox_rl.agents.kv_cache import KVCacheSettings, cache_nbytes, make_cache
from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import LoadedModel
from sandbox_rl.enums import TaskType

TASKS = [t.value for t in TaskType]

# Mistral-7B-v0.3 (no sliding window, so a 4k cache holds all 4k tokens).
MISTRAL_7B = dict(vocab_size=32768, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                  rms_norm_eps=1e-5, rope_theta=1e6, sliding_window=None)
TINY = dict(MISTRAL_7B, vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2)


def emit(metric: str, value: float, **extra) -> None:
    print(json.dumps({"metric": metric, "value": round(float(value), 4), **extra}), flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device, nbytes: int) -> float:
    """Bytes per second read by a device-to-device copy (read + write counted as one read)."""
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    sync(device)
    start, reps = time.perf_counter(), 10
    for _ in range(reps):
        dst.copy_(src)
    sync(device)
    # A copy reads and writes every byte; decoding only reads weights, so count both directions.
    return 2 * nbytes * reps / (time.perf_counter() - start)


def python_quanto_unpack() -> None:
    """Use quanto's portable unpack on CUDA instead of its CUDA extension, whose first use
    compiles AWQ and Marlin kernels for minutes; cache bytes are the same either way, only the
    compressed cache's decode time is pessimistic."""
    # quanto's internals, on CUDA only (its import registers quanto's torch ops).
    from optimum.quanto.library.extensions import get_extension

    def unpack(packed: torch.Tensor, bits: int) -> torch.Tensor:  # quanto's "default" impl
        mask_shifts = [(2 ** (bits * (i + 1)) - 1, bits * i) for i in range(8 // bits)]
        return torch.cat([(packed & mask) >> shift for mask, shift in mask_shifts]).to(torch.uint8)

    try:
        ext = get_extension("quanto_cuda")
    except KeyError:
        return
    ext._lib = type("PortableUnpack", (), {"unpack": staticmethod(unpack)})


def timed_generate(model, device, input_ids, new_tokens: int, **kwargs) -> float:
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                       max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                       pad_token_id=0, eos_token_id=None, **kwargs)
    sync(device)
    return time.perf_counter() - start


def generation_speed(adapters: TaskAdapters, device, prompt_tokens: int, new_tokens: int,
                     rows_per_adapter: int, seed: int) -> dict[str, float]:
    model = adapters.model
    names = [n for n in TASKS for _ in range(rows_per_adapter)]
    gen = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    ids = torch.randint(1, vocab, (len(names), prompt_tokens), generator=gen).to(device)
    times: dict[str, float] = {}

    def run_base(n):
        with model.disable_adapter():
            return timed_generate(model, device, ids, n)

    def run_fused(n):
        with fused_adapters(model, names):
            return timed_generate(model, device, ids, n)

    def run_peft(n):
        return timed_generate(model, device, ids, n, adapter_names=names)

    def run_sequential(n):
        total = 0.0
        for task in TASKS:
            adapters.model.set_adapter(task)
            rows = ids[[i for i, a in enumerate(names) if a == task]]
            total += timed_generate(model, device, rows, n)
        return total

    for mode, fn in [("base", run_base), ("fused", run_fused), ("peft", run_peft),
                     ("sequential", run_sequential)]:
        fn(4)  # warm-up: kernels, allocator
        times[mode] = fn(new_tokens)
    tokens = len(names) * new_tokens
    for mode, seconds in times.items():
        emit(f"gpu_tokens_per_s_{mode}", tokens / seconds, rows=len(names),
             rows_per_adapter=rows_per_adapter, prompt_tokens=prompt_tokens,
             new_tokens=new_tokens, seconds=round(seconds, 3))
    emit("gpu_batched_speedup", times["sequential"] / times["fused"], rows=len(names),
         note="five one-adapter calls / one fused multi-adapter call")
    emit("gpu_fused_vs_peft_speedup", times["peft"] / times["fused"], rows=len(names))
    emit("gpu_adapter_overhead", times["fused"] / times["base"] - 1, rows=len(names),
         note="fused five-adapter time / adapters-disabled time - 1")
    return times


def kv_cache_bytes(model, device, tokens: int, decode: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(1, model.config.vocab_size, (1, tokens), generator=gen).to(device)
    results = {}
    for label, settings in [("dense", KVCacheSettings(enabled=False)),
                            ("quanto4", KVCacheSettings()),
                            ("quanto2", KVCacheSettings(nbits=2)),
                            ("fp8", KVCacheSettings(backend="fp8", nbits=8))]:
        cache = make_cache(model.config, settings)
        if cache is None:
            cache = DynamicCache(config=model.config)
        sync(device)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model(ids[:, :-1], past_key_values=cache, use_cache=True)
            step = ids[:, -1:]
            logits = []
            for _ in range(decode):
                out = model(step, past_key_values=cache, use_cache=True)
                logits.append(out.logits[:, -1].float())
                step = out.logits[:, -1:].argmax(-1)
        sync(device)
        results[label] = (cache_nbytes(cache), time.perf_counter() - start, torch.cat(logits))
        del cache, out
        if device.type == "cuda":
            torch.cuda.empty_cache()
    dense_bytes, _, dense_logits = results["dense"]
    for label, (nbytes, seconds, logits) in results.items():
        agree = (logits.argmax(-1) == dense_logits.argmax(-1)).float().mean().item()
        emit(f"gpu_kv_cache_bytes_{label}", nbytes, tokens=tokens + decode - 1,
             ratio_dense_over=round(dense_bytes / nbytes, 3), seconds=round(seconds, 3),
             greedy_agreement_with_dense=round(agree, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="scaled-down shapes (smoke test)")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rows-per-adapter", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--kv-tokens", type=int, default=4096)
    parser.add_argument("--kv-decode", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16
    torch.manual_seed(args.seed)
    config = MistralConfig(**(TINY if args.tiny else MISTRAL_7B))
    start = time.perf_counter()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    sync(device)
    build_s = time.perf_counter() - start
    loaded = LoadedModel("mistral-7b-random" if not args.tiny else "mistral-tiny-random", model,
                         None, "mistral", "random weights")
    adapters = TaskAdapters(loaded, TASKS, LoraSettings(rank=args.rank, dropout=0.0))
    with torch.no_grad():  # distinct adapters: PEFT starts B at zero
        for name, param in adapters.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.01)
    weight_bytes = adapters.base_nbytes()
    emit("gpu_model_bytes", weight_bytes, device=torch.cuda.get_device_name(device)
         if device.type == "cuda" else "cpu", build_seconds=round(build_s, 1),
         adapter_bytes_each=adapters.adapter_nbytes(TASKS[0]), torch=torch.__version__)
    bandwidth = copy_bandwidth(device, 2 << 30 if device.type == "cuda" else 64 << 20)
    emit("gpu_copy_bandwidth_gb_per_s", bandwidth / 1e9)
    emit("gpu_bandwidth_limit_steps_per_s", bandwidth / weight_bytes,
         note="decode steps/s if every step reads all weights once; tokens/s = this x rows")

    for rows in args.rows_per_adapter:
        generation_speed(adapters, device, args.prompt_tokens, args.new_tokens, rows, args.seed)
    python_quanto_unpack()
    kv_cache_bytes(adapters.model, device, args.kv_tokens, args.kv_decode, args.seed)
    if device.type == "cuda":
        emit("gpu_peak_memory_gb", torch.cuda.max_memory_allocated(device) / 1e9)


if __name__ == "__main__":
    main()
