"""Batched generation across tasks: one ``generate`` call, each row through its own adapter.

Rows may differ in adapter, sampling temperature, nucleus, stop strings and token budget;
PEFT routes each row through its adapter (``adapter_names=``), and per-row sampling and stopping
are a logits processor and a stopping criterion, so a batch of five tasks costs one forward
pass per token.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from sandbox_rl.agents.fused_lora import BASE, fused_adapters, supports_fusion



@dataclass(frozen=True)
class SamplingSettings:
    """Decoding settings of one request; ``temperature == 0`` is greedy."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.max_new_tokens, int) and 1 <= self.max_new_tokens <= 4096):
            raise ValueError(f"invalid max_new_tokens={self.max_new_tokens!r}: expected in [1, 4096]")
        if not self.temperature >= 0:
            raise ValueError(f"invalid temperature={self.temperature!r}: expected >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"invalid top_p={self.top_p!r}: expected in (0, 1]")


@dataclass(frozen=True)
class GenerationRequest:
    """A prompt (already in the model's chat format) for one adapter (None: the base model)."""

    prompt: str
    adapter: str | None = None
    sampling: SamplingSettings = field(default_factory=SamplingSettings)


@dataclass(frozen=True)
class Completion:
    text: str
    adapter: str | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (a stop string), "eos" or "length"
    token_ids: tuple[int, ...] = ()


class _PerRowSampling(LogitsProcessor):
    """Temperature and top-p per row; greedy rows keep only their arg-max token."""

    def __init__(self, temperature: torch.Tensor, top_p: torch.Tensor) -> None:
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
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


class _PerRowStop(StoppingCriteria):
    """A row is done at its own token budget or when its text ends with one of its stops."""

    def __init__(self, prompt_len: int, budgets: torch.Tensor, stops: Sequence[tuple[str, ...]],
                 decode: Callable[[list[int]], str]) -> None:
        self.prompt_len, self.budgets, self.stops, self.decode = prompt_len, budgets, stops, decode

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        produced = input_ids.shape[1] - self.prompt_len
        done = self.budgets <= produced
        for row, stops in enumerate(self.stops):
            if stops and not done[row]:
                tail = self.decode(input_ids[row, self.prompt_len:].tolist())
                done[row] = any(s in tail for s in stops)
        return done


def generate_batch(model, tokenizer, requests: Sequence[GenerationRequest],
                   cache_factory: Callable[[], object] | None = None, seed: int = 0,
                   multi_adapter: bool = True, **generate_kwargs) -> list[Completion]:
    """Generate all requests in one call; rows are left-padded.

    ``model`` is a PEFT model (``multi_adapter``: each row through its adapter, fused into
    batched matmuls in eval mode, else PEFT's ``adapter_names``) or a plain model (adapters
    ignored). ``cache_factory`` makes the ``past_key_values`` object (for a quantised
    KV cache). Sampling draws from a generator seeded with ``seed``; the global torch RNG state
    is left as it was. ``generate_kwargs`` go to ``model.generate`` (e.g. ``min_new_tokens``).
    """
    if not requests:
        return []
    enc = tokenizer([r.prompt for r in requests], return_tensors="pt", padding=True,
                    add_special_tokens=False)
    device = next(model.parameters()).device
    input_ids, attention = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    prompt_len = input_ids.shape[1]
    budgets = torch.tensor([r.sampling.max_new_tokens for r in requests], device=device)
    temperature = torch.tensor([r.sampling.temperature for r in requests], dtype=torch.float32,
                               device=device)
    top_p = torch.tensor([r.sampling.top_p for r in requests], dtype=torch.float32, device=device)
    stops = [r.sampling.stop for r in requests]
    kwargs = {}
    fused = multi_adapter and supports_fusion(model)
    if multi_adapter and not fused:
        kwargs["adapter_names"] = [r.adapter or BASE for r in requests]
    if cache_factory is not None:
        kwargs["past_key_values"] = cache_factory()
    sample = bool((temperature > 0).any())
    processors = [_PerRowSampling(temperature, top_p)] if sample else []
    routing = fused_adapters(model, [r.adapter for r in requests]) if fused else nullcontext()
    with torch.random.fork_rng(devices=[]), torch.inference_mode(), routing:
        torch.manual_seed(seed)
        # Sampling knobs are per row in the processor; generate's own stay neutral.
        neutral = {"top_k": 0, "top_p": 1.0, "temperature": 1.0} if sample else {}
        out = model.generate(
            input_ids=input_ids, attention_mask=attention, do_sample=sample,
            max_new_tokens=int(budgets.max()), **neutral,
            logits_processor=LogitsProcessorList(processors),
            stopping_criteria=StoppingCriteriaList([_PerRowStop(prompt_len, budgets, stops,
                                                                _decoder(tokenizer))]),
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **kwargs,
            **generate_kwargs)
    return [_completion(tokenizer, r, out[i, prompt_len:].tolist(), int(attention[i].sum()))
            for i, r in enumerate(requests)]


def _decoder(tokenizer) -> Callable[[list[int]], str]:
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


def _completion(tokenizer, request: GenerationRequest, ids: list[int], prompt_tokens: int
                ) -> Completion:
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    budget = request.sampling.max_new_tokens
    ids = ids[:budget]
    reason = "length"
    if eos in ids:
        ids, reason = ids[: ids.index(eos)], "eos"
    ids = [t for t in ids if t != pad or pad == eos]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    for stop in request.sampling.stop:
        if stop in text:
            text, reason = text[: text.index(stop)], "stop"
    return Completion(text, request.adapter, prompt_tokens, len(ids), reason, tuple(ids))
