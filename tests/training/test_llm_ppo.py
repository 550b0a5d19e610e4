"""``train llm-ppo`` on the tiny model: PPO moves the adapter, PEFT files, the evaluation
protocol's held-out lines and tables."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from sandbox_rl.training.common import _sampled_at
from sandbox_rl.training.llm_ppo import LLMPPOConfig, report, train
from sandbox_rl.training.protocol import ProtocolConfig, evaluate_run

TASK = "trend_prediction"
TINY = dict(model="tiny-llama", tasks=(TASK,), updates=1, prompts_per_update=2,
            train_seeds=(0,), eval_seeds=(1000, 1001), steps=4, users=100, eval_samples=1,
            threads=1, learning_rate=1e-2, checkpoint_every=1, quiet=True)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_trains_saves_peft_adapters_and_reports_the_protocol(tmp_path):
    out = tmp_path / "run"
    cfg = LLMPPOConfig(**TINY, out=str(out))
    run = train(cfg)
    assert len(run.updates[TASK]) == 1 and run.updates[TASK][0]["rollouts"] == 2
    folder = out / "adapters" / TASK
    assert json.loads((folder / "adapter_config.json").read_text())["peft_type"] == "LORA"
    weights = load_file(folder / "adapter_model.safetensors")
    # PEFT initialises LoRA B to zero: a PPO step that changed the adapter leaves some B nonzero.
    assert any(torch.count_nonzero(w) for k, w in weights.items() if "lora_B" in k)
    assert (out / "checkpoints" / f"{TASK}_update1").is_dir()
    assert list((out / "tb").rglob("events.out.tfevents.*"))
    assert not (out / "resume").exists()

    # The figures are the protocol's lines, one per (task, arm), on the held-out worlds.
    trained, untrained = _lines(out / "eval_trained.jsonl"), _lines(out / "eval_untrained.jsonl")
    assert trained == run.reports["trained"].json_lines()
    assert untrained == run.reports["untrained"].json_lines()
    assert [r["arm"] for r in trained] == ["agents", "sampled", "heuristic", "random"]
    assert all(r["seeds"] == [1000, 1001] and len(r["per_world"]) == 2 for r in trained)
    assert untrained[0]["adapters"] == "untrained"
    for arm in ("heuristic", "random"):  # the same worlds and steps for both
        assert run.reports["trained"].result(TASK, arm) == run.reports["untrained"].result(TASK,
                                                                                          arm)
    heuristic, random = (run.reports["trained"].result(TASK, a).mean
                         for a in ("heuristic", "random"))
    assert heuristic > random
    # `sandbox-rl evaluate --adapters RUN/adapters` gives the same figures.
    again = evaluate_run(ProtocolConfig(tasks=(TASK,), seeds=(1000, 1001), steps=4, users=100,
                                        sampled=1), out / "adapters", "tiny-llama")
    for arm in ("agents", "sampled", "heuristic", "random"):
        assert again.result(TASK, arm).per_world == pytest.approx(
            run.reports["trained"].result(TASK, arm).per_world), arm

    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["eval_seeds"] == [1000, 1001]
    assert saved["tasks"][TASK]["updates"] == run.updates[TASK]
    assert saved["held_out"]["trained"] == "eval_trained.jsonl"
    console = Console(record=True, width=200)
    report(run, console)
    text = console.export_text()
    assert "Held-out evaluation" in text and "trained - untrained" in text and TASK in text
    assert "eval_trained.jsonl" in text


def test_group_samples_and_rollout_temperature_reach_the_learner(tmp_path):
    cfg = LLMPPOConfig(**{**TINY, "samples_per_prompt": 2, "rollout_temperature": 1.0,
                          "eval_samples": 0}, out=str(tmp_path / "run"))
    run = train(cfg)
    assert run.updates[TASK][0]["rollouts"] == 4  # 2 prompts x 2 samples
    assert [r["arm"] for r in _lines(tmp_path / "run" / "eval_trained.jsonl")] == \
        ["agents", "heuristic", "random"]  # --eval-samples 0: no sampled arm


def test_the_sampled_arm_decodes_at_the_rollout_temperature():
    from sandbox_rl.agents.task_specs import spec
    from sandbox_rl.training.task_episodes import as_trained, greedy

    seen = []

    def answer(task, task_spec, observations, seed):
        seen.append(task_spec.sampling.temperature)
        return []

    at = _sampled_at(answer, 1.3)
    at(TASK, greedy(spec(TASK)), [], 0)
    at(TASK, as_trained(spec(TASK)), [], 0)
    assert seen == [0.0, 1.3]
    assert _sampled_at(answer, 0.0) is answer


@pytest.mark.parametrize("field,value", [("tasks", ("dance",)), ("updates", 0),
                                         ("eval_samples", -1), ("users", 10),
                                         ("checkpoint_every", 0), ("eval_seeds", (0,)),
                                         ("eval_seeds", (999,)), ("eval_seeds", (1000, 1000)),
                                         ("train_seeds", (1000,)), ("learning_rate", 0.0),
                                         ("samples_per_prompt", 0), ("ppo_epochs", 0),
                                         ("rollout_temperature", -1.0)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        LLMPPOConfig(**{**TINY, field: value})


def test_default_held_out_worlds_are_the_registered_set():
    assert LLMPPOConfig().eval_seeds == tuple(range(1000, 1020))


def test_rollouts_of_a_closed_set_task_are_complete_answers():
    # PPO's rollouts decode within the task's choices, as proposals and evaluation do: every
    # trend_prediction rollout ranks all ten topics, even from the tiny untrained model.
    import numpy as np

    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model
    from sandbox_rl.envs.platform import TOPIC_NAMES
    from sandbox_rl.training.llm_ppo import episode_update, ppo_settings
    from sandbox_rl.training.ppo import PPOLearner
    from sandbox_rl.training.task_episodes import collect_episode

    adapters = TaskAdapters(load_model("tiny-llama"), ["trend_prediction"], LoraSettings())
    learner = PPOLearner(adapters, ppo_settings(2, 2, 1, 1e-3, 0))
    seen, update = [], learner.update

    def spy(adapter, prompts, reward_fn, choices=None):
        def scored(indices, texts):
            seen.extend(texts)
            return reward_fn(indices, texts)
        return update(adapter, prompts, scored, choices)

    learner.update = spy
    episode_update(learner, "trend_prediction", [collect_episode("trend_prediction", 0, 2, 100)],
                   2, np.random.default_rng(0))
    assert len(seen) == 4
    assert all(sorted(t.strip() for t in text.split(">")) == sorted(TOPIC_NAMES) for text in seen)
