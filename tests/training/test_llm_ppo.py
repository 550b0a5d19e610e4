"""``train llm-ppo`` on the tiny model: PPO moves the adapter, PEFT files, held-out table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from sandbox_rl.training.llm_ppo import LLMPPOConfig, reevaluate, report, train

TINY = dict(model="tiny-llama", tasks=("trend_prediction",), updates=1, prompts_per_update=2,
            train_seeds=(0,), eval_seeds=(1000, 1001), steps=4, users=100, eval_samples=1,
            threads=1, learning_rate=1e-2, checkpoint_every=1, quiet=True)


def test_trains_saves_peft_adapters_and_reports(tmp_path):
    cfg = LLMPPOConfig(**TINY, out=str(tmp_path / "run"))
    result = train(cfg)
    r = result[1]["trend_prediction"]
    assert len(r.untrained) == len(r.trained) == len(r.untrained_sampled) == 2
    assert len(r.updates) == 1 and r.updates[0]["rollouts"] == 2
    folder = tmp_path / "run" / "adapters" / "trend_prediction"
    assert json.loads((folder / "adapter_config.json").read_text())["peft_type"] == "LORA"
    weights = load_file(folder / "adapter_model.safetensors")
    # PEFT initialises LoRA B to zero: a PPO step that changed the adapter leaves some B nonzero.
    assert any(torch.count_nonzero(w) for k, w in weights.items() if "lora_B" in k)
    assert np.mean(r.heuristic) > np.mean(r.random)  # the env's baselines on the same held-out steps
    assert (tmp_path / "run" / "checkpoints" / "trend_prediction_update1").is_dir()
    assert list((tmp_path / "run" / "tb").rglob("events.out.tfevents.*"))
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["results"]["trend_prediction"]["trained"] == r.trained
    console = Console(record=True, width=200)
    report(result, console)
    text = console.export_text()
    assert "trend_prediction" in text and "sampled untrained" in text and "heuristic" in text
    assert np.isfinite(r.trained + r.untrained).all()
    # The saved run scored again on its own held-out worlds gives the same table, and on others
    # a table of those worlds.
    again = reevaluate(tmp_path / "run", cfg.eval_seeds, threads=1)[1]["trend_prediction"]
    for name in ("untrained", "trained", "untrained_sampled", "trained_sampled", "heuristic"):
        assert getattr(again, name) == pytest.approx(getattr(r, name)), name
    other_cfg, other = reevaluate(tmp_path / "run", (1005,), threads=1)
    assert other_cfg.eval_seeds == (1005,) and len(other["trend_prediction"].trained) == 1
    with pytest.raises(ValueError, match="eval_seeds"):
        reevaluate(tmp_path / "run", (0,))  # a training world
    with pytest.raises(ValueError, match="not a finished llm-ppo run"):
        reevaluate(tmp_path, (1000,))


def test_group_samples_and_rollout_temperature_reach_the_learner(tmp_path):
    cfg = LLMPPOConfig(**{**TINY, "samples_per_prompt": 2, "rollout_temperature": 1.0},
                       out=str(tmp_path / "run"))
    r = train(cfg)[1]["trend_prediction"]
    assert r.updates[0]["rollouts"] == 4  # 2 prompts x 2 samples


@pytest.mark.parametrize("field,value", [("tasks", ("dance",)), ("updates", 0),
                                         ("eval_samples", 0), ("users", 10), ("checkpoint_every", 0),
                                         ("eval_seeds", (0,)), ("learning_rate", 0.0),
                                         ("samples_per_prompt", 0), ("ppo_epochs", 0),
                                         ("rollout_temperature", -1.0)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        LLMPPOConfig(**{**TINY, field: value})
