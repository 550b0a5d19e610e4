"""Benchmark scripts run on scaled-down shapes (their figures are measured elsewhere)."""

from __future__ import annotations

import json
import runpy
import sys


def test_gpu_multi_adapter_runs_scaled_down(monkeypatch, capsys):
    argv = ["benchmarks/gpu_multi_adapter.py", "--tiny", "--prompt-tokens", "16", "--new-tokens",
            "4", "--rows-per-adapter", "1", "--kv-tokens", "128", "--kv-decode", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    figures = {line["metric"]: line for line in lines}
    for mode in ("base", "fused", "peft", "sequential"):
        assert figures[f"gpu_tokens_per_s_{mode}"]["value"] > 0
    assert figures["gpu_kv_cache_bytes_quanto4"]["ratio_dense_over"] > 3
    assert 1.9 < figures["gpu_kv_cache_bytes_fp8"]["ratio_dense_over"] <= 2.0  # bf16 -> fp8 + scales
