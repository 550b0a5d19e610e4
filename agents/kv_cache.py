"""KV-cache compression and a persisted prefix cache (docs/design.md).

Compression goes through transformers' own ``QuantizedCache`` (5.23): one class with a ``backend``
argument, ``"quanto"`` (``QuantoQuantizedLayer``, optimum-quanto, 2 or 4 bits), ``"hqq"``
(``HQQQuantizedLayer``, needs the ``hqq`` package, 1/2/3/4/8 bits) and ``"fp8"``
(``Fp8QuantizedLayer``, ``float8_e4m3fn`` with one per-tensor scale frozen at the first update, no
residual window and none of the group-wise arguments). The integer backends keep the newest
``residual_length`` tokens in full precision and quantise everything older in groups of
``q_group_size``.

The prefix cache holds the keys and values of a fixed prefix (a task's system prompt) in full
precision. Each use builds a fresh cache of the configured kind and fills it with those states, so
``generate`` only prefills the suffix and the stored prefix is never mutated (a quanto-quantised
cache cannot be deep-copied: its ``QTensor`` has no ``clone``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from peft.tuners.lora.layer import LoraLayer
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import DynamicCache, QuantizedCache
from transformers.utils import is_hqq_available, is_optimum_quanto_available

from sandbox_rl.paths import cache_dir
from sandbox_rl.validation import require, shorten

# Valid bit widths per backend, as transformers 5.23 checks them (quanto: qint2/qint4; hqq: its
# Quantizer's widths; fp8: float8_e4m3fn).
_BACKEND_NBITS: dict[str, tuple[int, ...]] = {
    "quanto": (2, 4),
    "hqq": (1, 2, 3, 4, 8),
    "fp8": (8,),
}


@dataclass(frozen=True)
class KVCacheSettings:
    """How the KV cache of a generation is stored.

    Arguments:
        enabled: compress the cache; ``False`` keeps transformers' default ``DynamicCache``.
        backend: ``"quanto"`` (optimum-quanto), ``"hqq"`` (needs ``pip install hqq``) or ``"fp8"``.
        nbits: bits per element: quanto 2 or 4, hqq 1, 2, 3, 4 or 8, fp8 8.
        q_group_size: elements that share one scale and zero point (integer backends).
        residual_length: newest tokens kept in full precision before they are quantised (integer
            backends; fp8 appends every token quantised at once). 32 rather than transformers'
            128: fed token by token to 512 tokens on the embedded model, quanto 4-bit holds
            4.9x fewer bytes than the dense cache at +2.1% perplexity with 32, only 2.7x with
            128 (``benchmarks/kv_cache.py``).
    """

    enabled: bool = True
    backend: str = "quanto"
    nbits: int = 4
    q_group_size: int = 64
    residual_length: int = 32

    def __post_init__(self) -> None:
        backends = sorted(_BACKEND_NBITS)
        require(self.backend in _BACKEND_NBITS, "backend", self.backend, f"one of {backends}",
                message=f"backend must be one of {backends}, got {shorten(self.backend)}")
        allowed = _BACKEND_NBITS[self.backend]
        require(self.nbits in allowed, "nbits", self.nbits, f"one of {allowed}",
                message=f"nbits must be one of {allowed} for backend {self.backend!r}, got "
                        f"{self.nbits}")
        require(not self.q_group_size < 1, "q_group_size", self.q_group_size, ">= 1",
                message=f"q_group_size must be >= 1, got {self.q_group_size}")
        require(not self.residual_length < 0, "residual_length", self.residual_length, ">= 0",
                message=f"residual_length must be >= 0, got {self.residual_length}")


def _require_backend(backend: str) -> None:
    available = {"quanto": is_optimum_quanto_available, "hqq": is_hqq_available, "fp8": lambda: True}
    package = {"quanto": "optimum-quanto", "hqq": "hqq", "fp8": ""}
    if not available[backend]():
        raise ImportError(
            f"the {backend!r} KV-cache backend needs the {package[backend]!r} package: "
            f"pip install {package[backend]} (or choose backend='quanto')"
        )


def make_cache(model_config, settings: KVCacheSettings):
    """The cache to pass as ``past_key_values=`` to ``generate``/``forward``; ``None`` when disabled
    (the model then builds its default ``DynamicCache``)."""
    if not settings.enabled:
        return None
    _require_backend(settings.backend)
    if settings.backend != "fp8":
        _check_group_size(model_config, settings.q_group_size)
    if settings.backend == "fp8":
        # transformers' fp8 layer is per-tensor and rejects every group-wise argument.
        return QuantizedCache(backend="fp8", config=model_config)
    return QuantizedCache(
        backend=settings.backend,
        config=model_config,
        nbits=settings.nbits,
        q_group_size=settings.q_group_size,
        residual_length=settings.residual_length,
    )


def cache_factory(model_config, settings: KVCacheSettings | None):
    """A maker of fresh caches to pass as ``cache_factory`` to ``generate_batch``; ``None``
    when compression is off (generation then uses its default dense cache)."""
    if settings is None or not settings.enabled:
        return None
    return lambda: make_cache(model_config, settings)


def _check_group_size(model_config, q_group_size: int) -> None:
    # Along axis 0 the backends group the flattened [heads, seq, head_dim] states of each sequence, so
    # a group size dividing one token's states (kv heads x head_dim) works at every length; any other
    # fails inside quanto at the first odd-sized update.
    config = model_config.get_text_config(decoder=True)
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    if (heads * head_dim) % q_group_size:
        raise ValueError(
            f"q_group_size={q_group_size} must divide one token's cached states "
            f"({heads} kv heads x {head_dim} head_dim = {heads * head_dim})"
        )


def _dense_cache(model_config, settings: KVCacheSettings | None):
    cache = make_cache(model_config, settings) if settings is not None else None
    return cache if cache is not None else DynamicCache(config=model_config)


# --------------------------------------------------------------------------- storage accounting


def _plain_tensors(obj) -> Iterator[torch.Tensor]:
    """Every plain tensor under ``obj``: quanto's ``QTensor``/``PackedTensor`` are unwrapped through
    ``__tensor_flatten__`` down to their packed uint8 data, scales and shifts; hqq's ``(W_q, meta)``
    and fp8's ``(data, scale)`` tuples are walked."""
    if isinstance(obj, torch.Tensor):
        if type(obj) is torch.Tensor or not hasattr(obj, "__tensor_flatten__"):
            yield obj
            return
        names, _ = obj.__tensor_flatten__()
        for name in names:
            yield from _plain_tensors(getattr(obj, name))
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _plain_tensors(value)
    elif isinstance(obj, (tuple, list)):
        for value in obj:
            yield from _plain_tensors(value)


def cache_nbytes(cache) -> int:
    """Bytes of storage a cache object holds: the full-precision keys/values of each layer (all of a
    ``DynamicCache``, the residual window of a quantised one) plus the quantised data, scales and
    zero points. Counted from the tensors' storages, each once, so views are not double-counted."""
    seen: set[int] = set()
    total = 0
    for layer in cache.layers:
        parts = [layer.keys, layer.values, getattr(layer, "_quantized_keys", None),
                 getattr(layer, "_quantized_values", None)]
        for tensor in _plain_tensors(parts):
            storage = tensor.untyped_storage()
            if storage.data_ptr() in seen and storage.nbytes() > 0:
                continue
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


# --------------------------------------------------------------------------- perplexity


@dataclass(frozen=True)
class CacheEvaluation:
    perplexity: float
    cache_nbytes: int  # storage the cache holds after the whole sequence went through it
    tokens: int  # tokens in the cache at the end


@torch.no_grad()
def evaluate_cache(model, input_ids: torch.Tensor, cache_settings: KVCacheSettings | None,
                   chunk_size: int = 1) -> CacheEvaluation:
    """Feed ``input_ids`` ([batch, seq] or [seq]) ``chunk_size`` tokens at a time through the cache
    built from ``cache_settings`` (``None`` or disabled: a ``DynamicCache``), so every prediction
    attends to the cached (possibly quantised) states of all earlier chunks."""
    if input_ids.dim() == 1:
        input_ids = input_ids.unsqueeze(0)
    if input_ids.shape[1] < 2:
        raise ValueError("perplexity needs at least 2 tokens")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    input_ids = input_ids.to(model.device)
    cache = _dense_cache(model.config, cache_settings)
    nll, count = 0.0, 0
    seq = input_ids.shape[1]
    for start in range(0, seq - 1, chunk_size):
        stop = min(start + chunk_size, seq - 1)
        logits = model(input_ids[:, start:stop], past_key_values=cache, use_cache=True).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        targets = input_ids[:, start + 1 : stop + 1]
        nll -= logprobs.gather(-1, targets.unsqueeze(-1)).sum().item()
        count += targets.numel()
    return CacheEvaluation(math.exp(nll / count), cache_nbytes(cache), cache.get_seq_length())


def perplexity(model, input_ids: torch.Tensor, cache_settings: KVCacheSettings | None, chunk_size: int = 1) -> float:
    """Perplexity of ``input_ids`` evaluated through the cache (see ``evaluate_cache``), to compare
    compressed and uncompressed caches."""
    return evaluate_cache(model, input_ids, cache_settings, chunk_size).perplexity


# --------------------------------------------------------------------------- prefix cache


def model_fingerprint(model) -> str:
    """Identifies the weights a prefix cache was computed with: the full config, the dtype and a
    sample of the first and last parameters (random tiny models share a config but not weights)."""
    digest = hashlib.sha256()
    digest.update(model.config.to_json_string(use_diff=False).encode())
    digest.update(str(model.dtype).encode())
    params = list(model.parameters())
    for param in (params[0], params[-1]):
        sample = param.detach().flatten()[:1024].float().cpu().contiguous()
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()


def adapter_fingerprint(model, adapter: str | None) -> str:
    """Identifies one LoRA adapter's current weights: a digest of every LoRA tensor of ``adapter``
    (name, shape, bytes) and its per-layer scaling. ``None`` (or a model without that adapter): the
    base alone. Hashing the bytes rather than trusting a version counter catches every way
    trainers change weights (optimiser steps, ``copy_``, edits through ``.data``, reloads); it costs
    about a millisecond per megabyte of adapter."""
    digest = hashlib.sha256(f"adapter:{adapter}".encode())
    if adapter is None:
        return digest.hexdigest()
    tag = f".{adapter}."
    for name, param in model.named_parameters():
        if "lora_" in name and tag in name:
            data = param.detach().contiguous().cpu()
            digest.update(f"{name}{tuple(data.shape)}{data.dtype}".encode())
            digest.update(data.view(torch.uint8).numpy().tobytes())
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.scaling:
            digest.update(f"{name}:{module.scaling[adapter]!r}".encode())
    return digest.hexdigest()


def _ids_list(ids) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() == 2:
            if ids.shape[0] != 1:
                raise ValueError("a prefix is one sequence; got a batch of ids")
            ids = ids[0]
        return [int(i) for i in ids.tolist()]
    return [int(i) for i in ids]


class PrefixCache:
    """Keys and values of a fixed prefix, computed once and reused by every generation that starts
    with it.

    Batches: the prefix states are expanded over the batch. Ordinary left padding (pads before the
    prefix) cannot share one prefix cache, as each row's prefix would sit at another offset; pad
    between the prefix and the suffix instead (``batch_inputs`` builds that layout). transformers
    5.23's ``generate`` derives position ids from the attention mask's cumulative sum, so the mid
    pads shift no positions, and greedy tokens match unpadded per-row generation (checked on Llama
    in tests). Models whose forward takes no ``position_ids`` would need equal-length rows.
    """

    def __init__(self, prefix_ids: list[int], keys: list[torch.Tensor], values: list[torch.Tensor], fingerprint: str):
        if not prefix_ids:
            raise ValueError("prefix_ids is empty")
        if len(keys) != len(values):
            raise ValueError("keys and values must have one tensor per layer")
        self.prefix_ids = list(prefix_ids)
        self.keys = keys
        self.values = values
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.prefix_ids)

    @classmethod
    @torch.no_grad()
    def compute(cls, model, prefix_ids) -> PrefixCache:
        """One forward pass over the prefix, keeping its full-precision states."""
        ids = _ids_list(prefix_ids)
        cache = DynamicCache(config=model.config)
        model(torch.tensor([ids], device=model.device), past_key_values=cache, use_cache=True)
        keys = [layer.keys.contiguous() for layer in cache.layers]
        values = [layer.values.contiguous() for layer in cache.layers]
        return cls(ids, keys, values, model_fingerprint(model))

    def check(self, model) -> None:
        if model_fingerprint(model) != self.fingerprint:
            raise ValueError("this prefix cache was computed for another model (fingerprint mismatch)")

    def cache_for(self, model_config, input_ids: torch.Tensor, settings: KVCacheSettings | None = None,
                  attention_mask: torch.Tensor | None = None):
        """A fresh cache (compressed per ``settings``) holding the prefix states for a batch of
        ``input_ids`` that all start with the prefix; pass it with the full ``input_ids`` to
        ``generate``. When ``input_ids`` is just the prefix, its last token is left out of the cache
        so ``generate`` has a token to prefill."""
        if input_ids.dim() != 2:
            raise ValueError("input_ids must be [batch, seq]")
        n = len(self.prefix_ids)
        if attention_mask is not None and not bool(attention_mask[:, :n].all()):
            raise ValueError("padding inside the shared prefix; pad between prefix and suffix (batch_inputs)")
        prefix = torch.tensor(self.prefix_ids, device=input_ids.device)
        if input_ids.shape[1] < n or not bool((input_ids[:, :n] == prefix).all()):
            raise ValueError("input_ids do not start with this cache's prefix ids")
        used = min(n, input_ids.shape[1] - 1)
        batch = input_ids.shape[0]
        cache = _dense_cache(model_config, settings)
        for layer_idx, (key, value) in enumerate(zip(self.keys, self.values)):
            key = key[:, :, :used].expand(batch, -1, -1, -1).contiguous()
            value = value[:, :, :used].expand(batch, -1, -1, -1).contiguous()
            cache.update(key, value, layer_idx)
        return cache

    def batch_inputs(self, suffixes: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` for rows prefix + suffix, padded between the two."""
        if not suffixes or any(len(suffix) == 0 for suffix in suffixes):
            raise ValueError("every row needs a non-empty suffix")
        n, longest = len(self.prefix_ids), max(len(suffix) for suffix in suffixes)
        input_ids = torch.full((len(suffixes), n + longest), pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        input_ids[:, :n] = torch.tensor(self.prefix_ids)
        attention_mask[:, :n] = 1
        for row, suffix in enumerate(suffixes):
            input_ids[row, n + longest - len(suffix) :] = torch.tensor(suffix)
            attention_mask[row, n + longest - len(suffix) :] = 1
        return input_ids, attention_mask

    @torch.no_grad()
    def generate(self, model, input_ids: torch.Tensor, settings: KVCacheSettings | None = None, **kwargs):
        """``model.generate`` over ``input_ids`` (prefix + suffix) with the prefix taken from here."""
        self.check(model)
        cache = self.cache_for(model.config, input_ids, settings, kwargs.get("attention_mask"))
        return model.generate(input_ids, past_key_values=cache, **kwargs)

    # ----------------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> None:
        """Safetensors file: one key/value tensor per layer; prefix ids and the model fingerprint in
        the metadata."""
        tensors = {}
        for i, (key, value) in enumerate(zip(self.keys, self.values)):
            tensors[f"keys.{i}"] = key.contiguous()
            tensors[f"values.{i}"] = value.contiguous()
        metadata = {
            "format": "sandbox_rl.prefix_cache.v1",
            "prefix_ids": json.dumps(self.prefix_ids),
            "fingerprint": self.fingerprint,
            "num_layers": str(len(self.keys)),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, model=None, prefix_ids=None, fingerprint: str | None = None
             ) -> PrefixCache:
        """Load a saved prefix cache; with ``model`` and/or ``prefix_ids``, refuse (``ValueError``) one
        computed for another model or another prefix; with ``fingerprint`` (then ``model`` only
        places it), refuse one stored under another fingerprint (e.g. of other adapter weights)."""
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != "sandbox_rl.prefix_cache.v1":
                raise ValueError(f"{path} is not a sandbox_rl prefix cache")
            num_layers = int(metadata["num_layers"])
            keys = [handle.get_tensor(f"keys.{i}") for i in range(num_layers)]
            values = [handle.get_tensor(f"values.{i}") for i in range(num_layers)]
        stored_ids = json.loads(metadata["prefix_ids"])
        if prefix_ids is not None and _ids_list(prefix_ids) != stored_ids:
            raise ValueError(f"{path} holds the cache of another prefix ({len(stored_ids)} tokens)")
        prefix = cls(stored_ids, keys, values, metadata["fingerprint"])
        if fingerprint is not None and prefix.fingerprint != fingerprint:
            raise ValueError(f"{path} was computed with other weights (fingerprint mismatch)")
        if model is not None:
            if fingerprint is None:
                prefix.check(model)
            prefix = prefix.to(model.device)
        return prefix

    def to(self, device) -> PrefixCache:
        self.keys = [k.to(device) for k in self.keys]
        self.values = [v.to(device) for v in self.values]
        return self


class PrefixCacheStore:
    """Prefix caches of one model keyed by name (a task, or an adapter and its prompt prefix),
    computed on first use, persisted as ``<directory>/<fingerprint[:16]>/<name>.safetensors`` and
    reloaded from there (``persist=False``: memory only). A stored prefix whose ids or fingerprint
    no longer match (the prompt or the adapter weights changed) is recomputed and overwritten.

    ``get`` computes with the model as it stands (the base, or PEFT's active adapter);
    ``lookup``/``put`` serve callers that compute the states themselves under a fingerprint of
    their own (``generate_batch`` routes each prefix through its row's adapter and keys it with
    ``adapter_fingerprint``)."""

    def __init__(self, model, directory: str | Path | None = None, persist: bool = True):
        self.model = model
        self.fingerprint = model_fingerprint(model)
        root = Path(directory) if directory is not None else cache_dir() / "prefix_cache"
        self.directory = root / self.fingerprint[:16]
        self.persist = persist
        self._memory: dict[str, PrefixCache] = {}
        self.computed = 0  # prefixes computed (not found in memory or on disk), for tests and benchmarks

    def path(self, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"prefix cache names are [A-Za-z0-9_.-]+, got {name!r}")
        return self.directory / f"{name}.safetensors"

    def combined(self, fingerprint: str) -> str:
        """The fingerprint of this store's base model combined with ``fingerprint`` (of an adapter)."""
        return hashlib.sha256(f"{self.fingerprint}:{fingerprint}".encode()).hexdigest()

    def lookup(self, name: str, prefix_ids, fingerprint: str) -> PrefixCache | None:
        """The cache stored under ``name`` when it holds ``prefix_ids`` under ``fingerprint``."""
        ids = _ids_list(prefix_ids)
        cached = self._memory.get(name)
        if cached is not None and cached.prefix_ids == ids and cached.fingerprint == fingerprint:
            return cached
        path = self.path(name)
        if not (self.persist and path.exists()):
            return None
        try:
            prefix = PrefixCache.load(path, self.model, ids, fingerprint=fingerprint)
        except ValueError:
            return None  # another prompt or other weights: the caller recomputes
        self._memory[name] = prefix
        return prefix

    def put(self, name: str, prefix: PrefixCache) -> None:
        self.computed += 1
        if self.persist:
            prefix.save(self.path(name))
        self._memory[name] = prefix

    def items(self) -> list[tuple[str, PrefixCache]]:
        """The prefix caches held in memory, by name (to save them with a larger state)."""
        return sorted(self._memory.items())

    def restore(self, name: str, path: str | Path) -> None:
        """Hold the prefix cache saved at ``path`` under ``name``, on the model's device; its
        ids and fingerprint are checked at each lookup, as for any stored cache."""
        self.path(name)  # checks the name
        prefix = PrefixCache.load(path)
        device = self.model.device
        prefix.keys = [k.to(device) for k in prefix.keys]
        prefix.values = [v.to(device) for v in prefix.values]
        self._memory[name] = prefix

    def get(self, name: str, prefix_ids) -> PrefixCache:
        prefix = self.lookup(name, prefix_ids, self.fingerprint)
        if prefix is None:
            prefix = PrefixCache.compute(self.model, prefix_ids)
            self.put(name, prefix)
        return prefix
