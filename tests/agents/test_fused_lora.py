"""Fused mixed-adapter LoRA equals PEFT's own adapter_names path."""

from __future__ import annotations

import torch

from sandbox_rl.agents.fused_lora import fused_adapters, supports_fusion
from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import load_model


def _adapters(model: str) -> TaskAdapters:
    adapters = TaskAdapters(load_model(model), ["t1", "t2"], LoraSettings(rank=4))
    adapters.add("t3", LoraSettings(rank=8, alpha=4.0))  # another rank and scaling
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in adapters.names:
            for p in adapters.parameters(name):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    adapters.model.eval()
    return adapters


def test_fused_logits_match_peft_mixed_batch():
    for model in ("tiny-llama", "tiny-phi"):
        adapters = _adapters(model)
        rows = ["t3", None, "t1", "t2", "t1"]
        ids = torch.randint(4, 1000, (len(rows), 9))
        with torch.no_grad():
            expected = adapters.model(input_ids=ids,
                                      adapter_names=[r or "__base__" for r in rows]).logits
            assert supports_fusion(adapters.model)
            with fused_adapters(adapters.model, rows):
                fused = adapters.model(input_ids=ids).logits
            restored = adapters.model(input_ids=ids,
                                      adapter_names=[r or "__base__" for r in rows]).logits
        torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(restored, expected)


def test_training_mode_is_not_fused():
    adapters = _adapters("tiny-llama")
    adapters.model.train()
    assert not supports_fusion(adapters.model)
