"""Batched generation across tasks: one call, each row through its own adapter.

Rows may differ in adapter, sampling temperature, nucleus, stop strings and token budget. The
decode loop is written here rather than left to ``model.generate`` because the real task mix
has very unequal completion lengths (e.g. 60, 19, 12, 5 and 5 tokens) and prompt lengths (217
to 444 tokens): ``generate`` pads every prompt to the longest and keeps every row in the batch
until the longest row is done, so a batch of five cost more than five separate calls. Here

- each row is prefilled on its own (no padding FLOPs; a prefill of a few hundred tokens is
  compute-bound already at batch 1), starting from the cached states of its fixed prefix (a
  task's system prompt) when a ``PrefixCacheStore`` is given, keyed by the row's adapter and
  that adapter's current weights;
- the rows' states are merged into one left-padded cache (a ``QuantizedCache`` from
  ``cache_factory`` when given) and decoded together, one forward pass per token for all
  rows, each row through its adapter (fused stacked LoRA weights in eval mode, PEFT's
  ``adapter_names`` otherwise);
- a finished row leaves the batch at once: the cache (``reorder_cache`` with the surviving
  rows, which quantised layers support too), the attention mask, the positions and the fused
  adapter weights follow.

Per-row sampling is a logits processor; sampling draws from a generator seeded with ``seed``.
A row with ``choices`` (``agents/choices.py``) may only write tokens that continue a valid
answer, and is done as soon as its answer is complete.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import LoraLayer
from transformers import DynamicCache, LogitsProcessor
from transformers.cache_utils import DynamicLayer

from sandbox_rl.agents.choices import Choices, ChoiceState
from sandbox_rl.agents.fused_lora import BASE, FusedRouting, fused_adapters, supports_fusion
from sandbox_rl.agents.kv_cache import PrefixCache, PrefixCacheStore, adapter_fingerprint
from sandbox_rl.validation import Int, require


@dataclass(frozen=True)
class SamplingSettings:
    """Decoding settings of one request; ``temperature == 0`` is greedy."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Python ints (bools too, as before the checks were shared); the numbers are compared
        # as given (a string is a TypeError).
        Int(1, 4096, numpy=False, bools=True, text="in [1, 4096]").check(
            "max_new_tokens", self.max_new_tokens)
        require(self.temperature >= 0, "temperature", self.temperature, ">= 0")
        require(0 < self.top_p <= 1, "top_p", self.top_p, "in (0, 1]")


@dataclass(frozen=True)
class GenerationRequest:
    """A prompt (already in the model's chat format) for one adapter (None: the base model).

    ``prefix``: the fixed start of ``prompt`` (a task's system turn) whose keys and values a
    ``PrefixCacheStore`` may hold; empty: nothing to cache. ``choices``: the completion is a
    sequence of these choices (constrained decoding); ``None``: free text."""

    prompt: str
    adapter: str | None = None
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    prefix: str = ""
    choices: Choices | None = None

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ValueError("invalid prompt='': a request needs a non-empty prompt")
        if not self.prompt.startswith(self.prefix):
            raise ValueError(f"invalid prefix={self.prefix[:40]!r}...: the prompt does not start with it")


@dataclass(frozen=True)
class Completion:
    text: str
    adapter: str | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (a stop string or a complete choice answer), "eos" or "length"
    token_ids: tuple[int, ...] = ()


class _PerRowSampling(LogitsProcessor):
    """Temperature and top-p per row; greedy rows keep only their arg-max token."""

    def __init__(self, temperature: torch.Tensor, top_p: torch.Tensor) -> None:
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.LongTensor | None, scores: torch.FloatTensor) -> torch.FloatTensor:
        greedy = self.temperature == 0
        scores = scores / torch.where(greedy, 1.0, self.temperature)[:, None]
        if bool((self.top_p >= 1).all()):  # no nucleus: only greedy rows need masking
            best = scores.argmax(dim=-1, keepdim=True)
            keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, best, True)
            return scores.masked_fill(greedy[:, None] & ~keep, float("-inf"))
        sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - sorted_scores.softmax(dim=-1) > self.top_p[:, None]
        drop[greedy, 1:] = True
        drop[:, 0] = False
        return scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))


def _has_lora(model) -> bool:
    return any(isinstance(m, LoraLayer) for m in model.modules())


class _Router:
    """Routes the rows of each forward pass through their adapters (fused stacked weights, PEFT's
    ``adapter_names``, or nothing for a plain model / ``multi_adapter=False``)."""

    def __init__(self, adapters: list[str | None], fused: FusedRouting | None, named: bool) -> None:
        self.adapters, self.fused, self.named = adapters, fused, named
        self._selected: list[int] | None = None

    def kwargs(self, rows: list[int]) -> dict:
        """Forward kwargs for a batch holding ``rows`` (indices into the requests, in order)."""
        if self.fused is not None and rows != self._selected:
            self.fused.select(None if rows == list(range(len(self.adapters))) else rows)
            self._selected = list(rows)
        if self.named:
            return {"adapter_names": [self.adapters[r] or BASE for r in rows]}
        return {}


@contextmanager
def _routing(model, requests: Sequence[GenerationRequest], multi_adapter: bool) -> Iterator[_Router]:
    names = [r.adapter for r in requests]
    if multi_adapter and supports_fusion(model):
        with fused_adapters(model, names) as handle:
            yield _Router(names, handle, named=False)
    else:
        yield _Router(names, None, named=multi_adapter and _has_lora(model))


def generate_batch(model, tokenizer, requests: Sequence[GenerationRequest],
                   cache_factory: Callable[[], object] | None = None, seed: int = 0,
                   multi_adapter: bool = True, prefix_caches: PrefixCacheStore | None = None,
                   **generate_kwargs) -> list[Completion]:
    """Generate all requests in one batched decode (see the module docstring).

    ``model`` is a PEFT model (``multi_adapter``: each row through its adapter, fused into
    batched matmuls in eval mode, else PEFT's ``adapter_names``) or a plain model (adapters
    ignored). ``cache_factory`` makes the decode cache (e.g. a ``QuantizedCache``; ``None`` or
    a factory returning ``None``: a ``DynamicCache``). ``prefix_caches`` reuses the states of
    each request's ``prefix`` per (adapter weights, prefix). Sampling draws from the torch RNG
    seeded with ``seed`` inside a fork, so the global RNG state is left as it was. The only
    ``generate_kwargs`` is ``min_new_tokens`` (no end-of-sequence before that many tokens).
    """
    min_new_tokens = int(generate_kwargs.pop("min_new_tokens", 0))
    if generate_kwargs:
        raise TypeError(f"generate_batch got unsupported generation arguments {sorted(generate_kwargs)}: "
                        "it runs its own decode loop and takes only min_new_tokens")
    if not requests:
        return []
    if prefix_caches is not None and _has_lora(model) and not multi_adapter:
        raise ValueError("prefix_caches needs multi_adapter=True on a model with adapters: the "
                         "cached states are keyed by each row's adapter")
    with torch.random.fork_rng(devices=[]), torch.inference_mode(), \
            _routing(model, requests, multi_adapter) as router:
        torch.manual_seed(seed)
        rows = _prefill(model, tokenizer, requests, router, prefix_caches)
        cache, mask = _merge(model, [c for c, _, _ in rows], cache_factory)
        states = [ChoiceState(r.choices, tokenizer) if r.choices is not None else None
                  for r in requests]
        ids = _decode(model, tokenizer, requests, router, torch.cat([l for _, l, _ in rows]),
                      cache, mask, [n for _, _, n in rows], min_new_tokens, states)
    return [_completion(tokenizer, r, row_ids, n, state)
            for r, row_ids, (_, _, n), state in zip(requests, ids, rows, states)]


# --------------------------------------------------------------------------- prefill


def _tokens(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _forward(model, ids: list[int], start: int, cache, kwargs: dict) -> torch.Tensor:
    """Run ``ids[start:]`` (positions from ``start``) through ``cache``; last-token logits."""
    device = next(model.parameters()).device
    x = torch.tensor([ids[start:]], device=device)
    positions = torch.arange(start, len(ids), device=device)[None]
    out = model(input_ids=x, position_ids=positions, past_key_values=cache, use_cache=True,
                logits_to_keep=1, **kwargs)
    return out.logits[:, -1].float()


def _prefill(model, tokenizer, requests, router: _Router, store: PrefixCacheStore | None
             ) -> list[tuple[DynamicCache, torch.Tensor, int]]:
    """Per row: its cache, its next-token logits and its prompt length. One row at a time: no
    padding FLOPs, and a few hundred prompt tokens already make the matmuls compute-bound."""
    rows, fingerprints = [], {}
    for i, request in enumerate(requests):
        ids, kwargs = _tokens(tokenizer, request.prompt), router.kwargs([i])
        cache, start = DynamicCache(config=model.config), 0
        prefix = _cached_prefix(model, tokenizer, request, ids, router, i, store, fingerprints)
        if prefix is not None:
            start = min(len(prefix), len(ids) - 1)  # leave a token to compute the logits from
            for layer, (keys, values) in enumerate(zip(prefix.keys, prefix.values)):
                cache.update(keys[:, :, :start], values[:, :, :start], layer)
        rows.append((cache, _forward(model, ids, start, cache, kwargs), len(ids)))
    return rows


def _cached_prefix(model, tokenizer, request, ids, router, row, store, fingerprints
                   ) -> PrefixCache | None:
    """The states of ``request.prefix`` through this row's adapter, from ``store`` or computed
    into it; ``None`` without a store or prefix, or when the prompt's tokens do not start with
    the prefix's own tokens (a merge across the boundary)."""
    if store is None or not request.prefix:
        return None
    prefix_ids = _tokens(tokenizer, request.prefix)
    if not prefix_ids or ids[: len(prefix_ids)] != prefix_ids:
        return None
    adapter = request.adapter if router.named or router.fused is not None else None
    if adapter not in fingerprints:
        fingerprints[adapter] = store.combined(adapter_fingerprint(model, adapter))
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", adapter or "base")[:64]
    key = hashlib.sha256(repr((adapter, prefix_ids)).encode()).hexdigest()[:12]
    name = f"{label}.{key}"
    found = store.lookup(name, prefix_ids, fingerprints[adapter])
    if found is None:
        cache = DynamicCache(config=model.config)
        _forward(model, prefix_ids, 0, cache, router.kwargs([row]))
        found = PrefixCache(prefix_ids, [l.keys for l in cache.layers], [l.values for l in cache.layers],
                            fingerprints[adapter])
        store.put(name, found)
    return found


def _merge(model, caches: list[DynamicCache], cache_factory) -> tuple[object, torch.Tensor]:
    """One left-padded batch cache (from ``cache_factory`` when given) and its attention mask."""
    for layer in caches[0].layers:
        if type(layer) is not DynamicLayer:
            raise ValueError(f"generate_batch merges per-row caches of full-attention layers only; "
                             f"{type(model).__name__} has {type(layer).__name__}")
    lengths = [c.get_seq_length() for c in caches]
    longest = max(lengths)
    target = cache_factory() if cache_factory is not None else None
    if target is None:
        target = DynamicCache(config=model.config)
    for layer in range(len(caches[0].layers)):
        pad = [(0, 0, longest - n, 0) for n in lengths]
        keys = torch.cat([F.pad(c.layers[layer].keys, p) for c, p in zip(caches, pad)])
        values = torch.cat([F.pad(c.layers[layer].values, p) for c, p in zip(caches, pad)])
        target.update(keys, values, layer)
    mask = torch.zeros(len(caches), longest, dtype=torch.long, device=keys.device)
    for row, n in enumerate(lengths):
        mask[row, longest - n:] = 1
    return target, mask


# --------------------------------------------------------------------------- decode


def _decode(model, tokenizer, requests, router: _Router, logits: torch.Tensor, cache,
            mask: torch.Tensor, lengths: list[int], min_new_tokens: int,
            states: list[ChoiceState | None]) -> list[list[int]]:
    """Token ids of every row; a row leaves the batch as soon as it is done."""
    device = logits.device
    temperature = torch.tensor([r.sampling.temperature for r in requests], device=device)
    top_p = torch.tensor([r.sampling.top_p for r in requests], device=device)
    eos = tokenizer.eos_token_id
    alive, out = list(range(len(requests))), [[] for _ in requests]
    positions = torch.tensor(lengths, device=device)
    for step in range(max(r.sampling.max_new_tokens for r in requests)):
        index = torch.tensor(alive, device=device)
        if step < min_new_tokens and eos is not None:
            logits[:, eos] = float("-inf")
        logits = constrain(logits, [states[row] for row in alive])
        tokens = _pick(logits, temperature[index], top_p[index])
        keep = []
        for j, row in enumerate(alive):
            out[row].append(int(tokens[j]))
            if states[row] is not None:
                states[row].advance(out[row][-1])
                if not (states[row].done or len(out[row]) >= requests[row].sampling.max_new_tokens):
                    keep.append(j)
            elif not _done(tokenizer, requests[row], out[row], eos):
                keep.append(j)
        if not keep:
            break
        if len(keep) < len(alive):
            kept = torch.tensor(keep, device=device)
            cache.reorder_cache(kept)
            mask, positions, tokens = mask[kept], positions[kept], tokens[kept]
            alive = [alive[j] for j in keep]
        mask = torch.cat([mask, mask.new_ones(len(alive), 1)], dim=1)
        logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions[:, None],
                       past_key_values=cache, use_cache=True, **router.kwargs(alive)).logits[:, -1].float()
        positions = positions + 1
    return out


def constrain(logits: torch.Tensor, states: Sequence[ChoiceState | None],
              end: int | None = None) -> torch.Tensor:
    """Logits with every token that would leave a row's valid answers masked out (rows
    without a state: free text); a row whose answer is complete may only write ``end`` (for
    decoders that keep finished rows in the batch, e.g. TRL's rollouts; here they leave it)."""
    if all(state is None for state in states):
        return logits
    allowed = torch.ones_like(logits, dtype=torch.bool)
    for j, state in enumerate(states):
        if state is not None:
            allowed[j] = False
            allowed[j, state.allowed() if not state.done or end is None else [end]] = True
    return logits.masked_fill(~allowed, float("-inf"))


def _pick(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    if not bool((temperature > 0).any()):
        return logits.argmax(dim=-1)
    scores = _PerRowSampling(temperature, top_p)(None, logits)
    return torch.multinomial(scores.softmax(dim=-1), 1)[:, 0]


def _done(tokenizer, request: GenerationRequest, ids: list[int], eos: int | None) -> bool:
    if ids[-1] == eos or len(ids) >= request.sampling.max_new_tokens:
        return True
    stops = request.sampling.stop
    if not stops:
        return False
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return any(s in text for s in stops)


def _completion(tokenizer, request: GenerationRequest, ids: list[int], prompt_tokens: int,
                state: ChoiceState | None = None) -> Completion:
    eos = tokenizer.eos_token_id
    reason = "stop" if state is not None and state.done else "length"
    if eos in ids:
        ids, reason = ids[: ids.index(eos)], "eos"
    text = tokenizer.decode(ids, skip_special_tokens=True)
    for stop in request.sampling.stop:
        if stop in text:
            text, reason = text[: text.index(stop)], "stop"
    return Completion(text, request.adapter, prompt_tokens, len(ids), reason, tuple(ids))
