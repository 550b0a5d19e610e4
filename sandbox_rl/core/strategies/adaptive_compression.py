"""``adaptive_compression``: LoRA rank and KV-cache bits follow measured performance.

Every evolution step, each task whose mean reward over the interval stays at or above
``performance_threshold`` has its members' LoRA rank halved (truncated SVD keeps the best
low-rank part of what they learned); a task below it has the rank doubled, up to the configured
``lora_rank`` (the update is kept exactly and the new directions can learn). A base model whose
tasks all stay above the threshold stores its KV cache in 2 bits instead of 4; one that falls
below goes back to 4. Memory held is recorded at every step, so what compression saves and what
performance it keeps can be reported side by side.
"""

from __future__ import annotations

from dataclasses import replace

from sandbox_rl.agents.kv_cache import KVCacheSettings
from sandbox_rl.core.pool import ModelGroup, member_generator
from sandbox_rl.core.strategies.base import Strategy
from sandbox_rl.core.strategies.events import Event, KVBits, LoraRank
from sandbox_rl.core.strategies.host import StrategyHost
from sandbox_rl.enums import EvolutionStrategy

MIN_RANK = 1
KV_BITS = (2, 4)  # quanto's widths, low to high


class AdaptiveCompression(Strategy):
    kind = EvolutionStrategy.ADAPTIVE_COMPRESSION

    def __init__(self, llm: StrategyHost) -> None:
        super().__init__(llm)
        self.max_rank = self.config.lora_rank
        self.history: list[dict] = []

    def evolve(self) -> list[Event]:
        interval = self.config.evolution_interval
        threshold = self.config.performance_threshold
        events: list[Event] = []
        above_by_group: dict[str, list[bool]] = {}
        for task, members in self.llm.members.items():
            scores = self.llm.performance[task][-interval:]
            if not scores:
                continue
            mean = sum(scores) / len(scores)
            group = self.llm.group_of[task]
            above_by_group.setdefault(group.name, []).append(mean >= threshold)
            if group.adapters is None:
                continue
            rank = group.adapters.settings(members[0].adapter).rank
            target = max(MIN_RANK, rank // 2) if mean >= threshold else min(self.max_rank, rank * 2)
            if target == rank:
                continue
            for member in members:
                group.adapters.resize(member.adapter, target,
                                      member_generator(self.config.seed, member, salt=2))
                self.adapter_changed(group, member.adapter)
            events.append(LoraRank(task.value, rank, target, round(mean, 4), threshold))
        for name, flags in above_by_group.items():
            event = self._set_kv_bits(self.llm.groups[name], all(flags))
            if event:
                events.append(event)
        self.history.append({"evolution_step": self.llm.evolution_step, **self.memory()})
        return events

    def _set_kv_bits(self, group: ModelGroup, lower: bool) -> KVBits | None:
        settings = group.kv_cache
        if settings is None or not settings.enabled or settings.backend != "quanto":
            return None
        index = KV_BITS.index(settings.nbits)
        target = KV_BITS[max(index - 1, 0)] if lower else KV_BITS[min(index + 1, len(KV_BITS) - 1)]
        if target == settings.nbits:
            return None
        group.kv_cache = replace(settings, nbits=target)
        return KVBits(group.name, settings.nbits, target)

    def memory(self) -> dict:
        """Bytes of every adapter, and KV-cache bytes per cached token, across base models."""
        adapter_bytes = sum(g.adapters.adapter_nbytes(n) for g in self.llm.groups.values()
                            if g.adapters is not None for n in g.adapters.names)
        kv = sum(kv_bytes_per_token(g.model.config, g.kv_cache) for g in self.llm.groups.values())
        return {"adapter_bytes": adapter_bytes, "kv_bytes_per_token": kv}

    def stats(self) -> dict:
        return {**super().stats(), **self.memory(), "max_rank": self.max_rank}

    def state_dict(self):
        meta, tensors = super().state_dict()
        bits = {name: (g.kv_cache.nbits if g.kv_cache else None)
                for name, g in self.llm.groups.items()}
        return {**meta, "history": self.history, "kv_bits": bits}, tensors

    def load_state_dict(self, meta, tensors) -> None:
        super().load_state_dict(meta, tensors)
        self.history = list(meta["history"])
        for name, bits in meta["kv_bits"].items():
            group = self.llm.groups[name]
            if bits is not None and group.kv_cache is not None:
                group.kv_cache = replace(group.kv_cache, nbits=int(bits))


def kv_bytes_per_token(model_config, settings: KVCacheSettings | None) -> float:
    """Bytes one cached token costs across all layers: keys and values at the model's dtype,
    or at ``nbits`` plus a scale and zero point (two float values) per ``q_group_size`` elements
    (the residual window of full-precision tokens is left out: it does not grow with length)."""
    config = model_config.get_text_config(decoder=True)
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    elements = 2 * config.num_hidden_layers * heads * head_dim
    dtype_bytes = 2 if str(getattr(config, "dtype", "float32")).endswith("16") else 4
    if settings is None or not settings.enabled:
        return float(elements * dtype_bytes)
    if settings.backend == "fp8":
        return float(elements)
    return elements * settings.nbits / 8 + elements / settings.q_group_size * 2 * dtype_bytes
