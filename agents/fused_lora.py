"""Mixed-adapter LoRA inference as two batched matmuls per layer.

PEFT's ``adapter_names=`` path loops in Python over the adapters of a batch in every LoRA
layer (index, two linears, scatter-add per adapter); with five adapters on a 30-layer model
that loop costs about as much as the base model's own matmuls on a CPU. Here each row's
adapter weights are gathered once per ``generate`` call into stacked tensors, and every layer
adds ``x @ A_row^T @ B_row^T * scale`` with two ``torch.bmm`` calls. Ranks may differ: smaller
ranks are zero-padded, which leaves the product unchanged. Written by hand because PEFT has no
fused multi-adapter kernel for plain (non-variant) LoRA.

A decode loop that drops finished rows (or prefills one row at a time) keeps the stacked
weights in step with the rows it feeds through ``FusedRouting.select``.
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


class _LayerRows:
    """One layer's stacked weights for every row, and the (transposed) ones of the rows in use."""

    def __init__(self, a_rows: torch.Tensor, b_rows: torch.Tensor) -> None:
        self.a_all = a_rows.transpose(1, 2).contiguous()
        self.b_all = b_rows.transpose(1, 2).contiguous()
        self.a_t, self.b_t = self.a_all, self.b_all

    def select(self, rows: torch.Tensor | None) -> None:
        if rows is None:
            self.a_t, self.b_t = self.a_all, self.b_all
        else:
            self.a_t, self.b_t = self.a_all[rows], self.b_all[rows]


def _fused_forward(layer: LoraLinear, weights: _LayerRows):
    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        kwargs.pop("adapter_names", None)
        result = layer.base_layer(x, *args, **kwargs)
        update = torch.bmm(torch.bmm(x.to(weights.a_t.dtype), weights.a_t), weights.b_t)
        return result + update.to(result.dtype)

    return forward


class FusedRouting:
    """Handle of a ``fused_adapters`` block: which of its rows the next forward pass holds."""

    def __init__(self, layers: list[_LayerRows], rows: int) -> None:
        self._layers, self.rows = layers, rows

    def select(self, rows: Sequence[int] | None) -> None:
        """The next batches hold rows ``rows`` (indices into the block's adapters, in that
        order); ``None``: all rows again."""
        index = None
        if rows is not None:
            if any(not 0 <= r < self.rows for r in rows) or not rows:
                raise ValueError(f"rows must be a non-empty subset of range({self.rows}), got {list(rows)}")
            index = torch.as_tensor(list(rows), dtype=torch.long)
        for layer in self._layers:
            layer.select(index if index is None else index.to(layer.a_all.device))


def supports_fusion(model) -> bool:
    """Fusion applies to inference on plain LoRA linears (no DoRA or other variants)."""
    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    return bool(layers) and not model.training and all(not m.lora_variant for m in layers)


@contextmanager
def fused_adapters(model, adapters: Sequence[str | None]) -> Iterator[FusedRouting]:
    """Within the block, row ``i`` of every batch goes through adapter ``adapters[i]`` (or,
    after ``routing.select(rows)``, row ``j`` through ``adapters[rows[j]]``).

    The batch must match the selected rows (no beam search or multiple return sequences).
    """
    names = [a or BASE for a in adapters]
    layers = [m for m in model.modules() if isinstance(m, LoraLinear)]
    held: list[_LayerRows] = []
    try:
        with torch.no_grad():
            for layer in layers:
                held.append(_LayerRows(*_row_weights(layer, names)))
                layer.forward = _fused_forward(layer, held[-1])
        yield FusedRouting(held, len(names))
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)
