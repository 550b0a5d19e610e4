"""Mixed-adapter LoRA inference as two batched matmuls per layer.

PEFT's ``adapter_names=`` path loops in Python over the adapters of a batch in every LoRA
layer (index, two linears, scatter-add per adapter); with five adapters on a 30-layer model
that loop costs about as much as the base model's own matmuls on a CPU. Here each row's
adapter weights are gathered once per ``generate`` call into stacked tensors, and every layer
adds ``x @ A_row^T @ B_row^T * scale`` with two ``torch.bmm`` calls. Ranks may differ: smaller
ranks are zero-padded, which leaves the product unchanged. Written by hand because PEFT has no
fused multi-adapter kernel for plain (non-variant) LoRA.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from peft.tuners.lora.layer import Linear as LoraLinear

BASE = "__base__"  # PEFT's name for "no adapter" in adapter_names


def _row_weights(layer: LoraLinear, adapters: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stacked per-row A [B, r, in] and scaled B [B, out, r] (zeros for the base model)."""
    in_f, out_f = layer.in_features, layer.out_features
    known = [a for a in set(adapters) if a in layer.lora_A]
    rank = max((layer.r[a] for a in known), default=1)
    ref = layer.lora_A[known[0]].weight if known else layer.base_layer.weight
    a_rows = torch.zeros(len(adapters), rank, in_f, dtype=ref.dtype, device=ref.device)
    b_rows = torch.zeros(len(adapters), out_f, rank, dtype=ref.dtype, device=ref.device)
    for i, name in enumerate(adapters):
        if name in layer.lora_A:
            r = layer.r[name]
            a_rows[i, :r] = layer.lora_A[name].weight
            b_rows[i, :, :r] = layer.lora_B[name].weight * layer.scaling[name]
    return a_rows, b_rows


def _fused_forward(layer: LoraLinear, a_rows: torch.Tensor, b_rows: torch.Tensor):
    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        kwargs.pop("adapter_names", None)
        result = layer.base_layer(x, *args, **kwargs)
        update = torch.bmm(torch.bmm(x.to(a_rows.dtype), a_rows.transpose(1, 2)),
                           b_rows.transpose(1, 2))
        return result + update.to(result.dtype)

    return forward


def supports_fusion(model) -> bool:
    """Fusion applies to inference on plain LoRA linears (no DoRA or other variants)."""
    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    return bool(layers) and not model.training and all(not m.lora_variant for m in layers)


@contextmanager
def fused_adapters(model, adapters: Sequence[str | None]) -> Iterator[None]:
    """Within the block, row ``i`` of every batch goes through adapter ``adapters[i]``.

    The batch size must stay ``len(adapters)`` (no beam search or multiple return sequences).
    """
    names = [a or BASE for a in adapters]
    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    try:
        with torch.no_grad():
            for layer in layers:
                layer.forward = _fused_forward(layer, *_row_weights(layer, names))
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)
