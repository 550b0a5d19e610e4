"""``sandbox-rl evaluate --ray-address``: the worlds played by Ray actors on the two-node test
cluster give exactly the serial report."""

from __future__ import annotations

import json

import pytest
import torch

from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import load_model
from sandbox_rl.cli import main

pytestmark = pytest.mark.cluster

ARGS = ["evaluate", "--model", "tiny-llama", "--tasks", "trend_prediction", "user_engagement",
        "--seeds", "1000-1002", "--steps", "2", "--users", "200", "--threads", "1", "--json"]


def _saved_adapters(folder) -> str:
    """Task adapters moved away from PEFT's zero start, so the answers depend on them."""
    adapters = TaskAdapters(load_model("tiny-llama"), ["trend_prediction", "user_engagement"],
                            LoraSettings(), seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in adapters.names:
            for p in adapters.parameters(name):
                p.add_(0.05 * torch.randn(p.shape, generator=generator))
    adapters.save(folder)
    return str(folder)


def test_ray_workers_report_equals_the_serial_one(ray_cluster, tmp_path, capsys) -> None:
    torch.set_num_threads(1)
    folder = _saved_adapters(tmp_path / "adapters")
    assert main([*ARGS, "--adapters", folder]) == 0
    serial = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main([*ARGS, "--adapters", folder, "--ray-address", ray_cluster.address,
                 "--workers", "2"]) == 0
    on_ray = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(serial) == 6 and on_ray == serial
