"""The facade on a tiny model: steps, scoring, process_task, state, bad configs."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from sandbox_rl.core.self_evolving_oasis import (EvolutionStrategy, SelfEvolvingConfig, TaskType,
                                                 create_self_evolving_oasis)

TINY = {"model": "tiny-llama"}


def _sandbox(tmp_path, **overrides):
    fields = dict(task_distribution={t: "tiny-llama" for t in TaskType}, fallback_model=None,
                  num_users=200, model_pool_size=2, evolution_interval=2,
                  log_dir=str(tmp_path / "logs"))
    fields.update(overrides)
    return create_self_evolving_oasis(**fields)


def _adapter_weights(sandbox) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for g in sandbox.evolving_llm.groups.values()
            for n, p in g.adapters.model.named_parameters() if "lora_" in n}


def _env_arrays(sandbox):
    return sandbox.env.state_dict()


def test_simulate_step_returns_the_documented_keys_and_rewards_from_the_env(tmp_path):
    sandbox = _sandbox(tmp_path)
    result = sandbox.simulate_step()
    assert result["step"] == 1
    assert set(result["tasks"]) == {t.value for t in TaskType}
    for task, item in result["tasks"].items():
        assert isinstance(item["response"].text, str)
        assert 0.0 <= item["performance_score"] <= 1.0
        assert item["model_name"] == "tiny-llama"
    for key in ("total_users", "total_posts", "total_interactions", "network_density"):
        assert key in result["network_state"]
    assert result["network_state"]["total_users"] == 200
    assert result["evolution_stats"]["evolution_step"] == 0
    stats = sandbox.evolving_llm.get_evolution_stats()
    for key in ("evolution_step", "evolution_strategy", "model_pool_size", "model_performances",
                "lora_adapters"):
        assert key in stats
    assert len(stats["lora_adapters"]) == 5 * 2
    records = (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(records[0])["scores"] == {
        t: r["performance_score"] for t, r in result["tasks"].items()}


def test_evolution_runs_every_interval(tmp_path):
    sandbox = _sandbox(tmp_path, enable_online_adaptation=False)
    steps = [sandbox.simulate_step()["evolution_stats"]["evolution_step"] for _ in range(4)]
    assert steps == [0, 1, 1, 2]


def test_process_task_scores_against_the_simulation_without_advancing_it(tmp_path):
    sandbox = _sandbox(tmp_path)
    sandbox.simulate_step()
    meta, arrays = sandbox.env.state_dict()
    result = sandbox.evolving_llm.process_task(TaskType.NETWORK_OPTIMIZATION,
                                               "Tune the feed for engagement", {"hour": "now"})
    after_meta, after_arrays = sandbox.env.state_dict()
    assert after_meta == meta
    assert all(np.array_equal(arrays[k], after_arrays[k]) for k in arrays)
    score = result["performance_score"]
    # The score is the env's counterfactual reward of the parsed answer, reproducible.
    assert score == sandbox.score_now(TaskType.NETWORK_OPTIMIZATION, result["response"].text)
    # Different campaigns earn different simulated responses.
    scores = {sandbox.score_now(TaskType.USER_ENGAGEMENT, c) for c in (
        "segment=sports intensity=3", "segment=politics intensity=1", "none")}
    assert len(scores) >= 2


def test_process_task_rejects_bad_input(tmp_path):
    sandbox = _sandbox(tmp_path)
    with pytest.raises(ValueError, match="unknown task"):
        sandbox.evolving_llm.process_task("dancing", "hello")
    with pytest.raises(ValueError, match="non-empty prompt"):
        sandbox.evolving_llm.process_task(TaskType.TREND_PREDICTION, "  ")


def test_save_and_load_continue_the_same_trajectory(tmp_path):
    a = _sandbox(tmp_path, seed=3)
    for _ in range(3):
        a.simulate_step()
    assert a.save_state(tmp_path / "state")
    b = _sandbox(tmp_path, seed=99, model_pool_size=3)  # another config: the state brings its own
    assert b.load_state(tmp_path / "state")
    assert b.step_count == 3 and b.config.seed == 3 and b.config.model_pool_size == 2
    saved = sorted(p.stem for p in (tmp_path / "state" / "prefix_cache" / "tiny-llama").iterdir())
    assert saved and saved == [name for name, _ in b.evolving_llm.prefix_stores["tiny-llama"].items()]
    for _ in range(3):
        ra, rb = a.simulate_step(), b.simulate_step()
        assert {t: r["response"].text for t, r in ra["tasks"].items()} == \
               {t: r["response"].text for t, r in rb["tasks"].items()}
        assert {t: r["performance_score"] for t, r in ra["tasks"].items()} == \
               {t: r["performance_score"] for t, r in rb["tasks"].items()}
        assert ra["network_state"] == rb["network_state"]
    wa, wb = _adapter_weights(a), _adapter_weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory):
    """One saved state for the damaged-state tests (each damages its own copy)."""
    folder = tmp_path_factory.mktemp("saved")
    sandbox = _sandbox(folder)
    sandbox.simulate_step()
    assert sandbox.save_state(folder / "state")
    return folder / "state"


@pytest.mark.parametrize("damage", ["missing", "corrupt", "manifest", "version"])
def test_bad_state_returns_false_and_leaves_the_sandbox_unchanged(tmp_path, damage, caplog,
                                                                  saved_state):
    state = tmp_path / "state"
    shutil.copytree(saved_state, state)
    if damage == "missing":
        (state / "env" / "env_state.npz").unlink()
    elif damage == "corrupt":
        path = state / "tensors.safetensors"
        path.write_bytes(path.read_bytes()[:-7] + b"garbage")
    elif damage == "manifest":
        (state / "manifest.json").write_text("{not json")
    else:
        manifest = json.loads((state / "manifest.json").read_text())
        manifest["version"] = 999
        (state / "manifest.json").write_text(json.dumps(manifest))
    b = _sandbox(tmp_path, seed=5)
    b.simulate_step()
    before_env, before_w, before_llm = b.env, _adapter_weights(b), b.evolving_llm
    meta, _ = b.env.state_dict()
    with caplog.at_level(logging.ERROR):
        assert b.load_state(state) is False
    assert "load_state" in caplog.text
    assert b.env is before_env and b.evolving_llm is before_llm and b.step_count == 1
    assert b.env.state_dict()[0] == meta
    after_w = _adapter_weights(b)
    assert all(torch.equal(before_w[k], after_w[k]) for k in before_w)
    assert b.simulate_step()["step"] == 2


def test_an_interrupted_save_keeps_the_previous_state(tmp_path, monkeypatch):
    sandbox = _sandbox(tmp_path)
    sandbox.simulate_step()
    assert sandbox.save_state(tmp_path / "state")
    before = (tmp_path / "state" / "manifest.json").read_text()
    sandbox.simulate_step()
    import sandbox_rl.core.state as state_io

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(state_io, "save_env_state", boom, raising=False)
    monkeypatch.setattr("sandbox_rl.envs.state.save_env_state", boom)
    assert sandbox.save_state(tmp_path / "state") is False
    assert (tmp_path / "state" / "manifest.json").read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".state")]


@pytest.mark.parametrize("field,value", [
    ("evolution_strategy", "sideways"), ("lora_rank", 0), ("lora_rank", 2.5),
    ("lora_alpha", -1.0), ("lora_dropout", 1.0), ("adaptation_learning_rate", 0),
    ("evolution_interval", 0), ("performance_threshold", 1.5), ("model_pool_size", 0),
    ("enable_lora", "yes"), ("task_distribution", {"dancing": "tiny-llama"}),
    ("task_distribution", {TaskType.TREND_PREDICTION: ""}), ("num_users", 3),
])
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SelfEvolvingConfig(**{field: value})


def test_unknown_option_and_strategy_forms():
    with pytest.raises(ValueError, match="unknown option"):
        create_self_evolving_oasis(lora_rnak=4)
    assert SelfEvolvingConfig(evolution_strategy="GRADIENT_BASED").evolution_strategy \
        is EvolutionStrategy.GRADIENT_BASED


def test_missing_model_falls_back_with_a_warning_or_raises(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        sandbox = _sandbox(tmp_path, task_distribution={TaskType.CONTENT_GENERATION: "no/such-model",
                                                        **{t: "tiny-llama" for t in list(TaskType)[1:]}},
                           fallback_model="tiny-llama")
    assert "no/such-model" in caplog.text
    assert sandbox.evolving_llm.group_of[TaskType.CONTENT_GENERATION].name == "tiny-llama"
    with pytest.raises(ValueError, match="no/such-model"):
        _sandbox(tmp_path, task_distribution={TaskType.CONTENT_GENERATION: "no/such-model"},
                 fallback_model=None)


def test_each_step_scores_the_tasks_baselines_on_the_same_step(tmp_path):
    from sandbox_rl.envs.counterfactual import counterfactual_rewards
    from sandbox_rl.envs.heuristics import heuristic_action
    from sandbox_rl.envs.state import snapshot

    sandbox = _sandbox(tmp_path, seed=4)
    sandbox.simulate_step()
    snap = snapshot(sandbox.env)
    heuristic = {a: heuristic_action(a, sandbox.env.vector_observation(a))
                 for a in sandbox.env.agents}
    result = sandbox.simulate_step()
    actions = {t: r["response"].text for t, r in result["tasks"].items()}
    for task, r in result["tasks"].items():
        assert 0 <= r["random_score"] <= 1
        expected = counterfactual_rewards(sandbox.env, snap, {**actions, task: heuristic[task]},
                                          [task])[task]
        assert r["heuristic_score"] == expected
        if task == "content_generation":  # and the same action written as a post's text
            text = sandbox.env.tasks[task].format_action(heuristic[task])
            assert r["heuristic_text_score"] == counterfactual_rewards(
                sandbox.env, snap, {**actions, task: text}, [task])[task]
        else:
            assert "heuristic_text_score" not in r
        played = counterfactual_rewards(sandbox.env, snap, actions, [task])[task]
        assert r["performance_score"] == played  # the agents' own reward, same draws


def test_trained_adapters_start_every_member(tmp_path):
    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model

    names = [t.value for t in TaskType]
    trained = TaskAdapters(load_model("tiny-llama"), names, LoraSettings(rank=4), seed=11)
    with torch.no_grad():
        for p in trained.parameters("trend_prediction"):
            p.add_(0.5)
    trained.save(tmp_path / "run" / "adapters")
    sandbox = _sandbox(tmp_path, adapters_dir=str(tmp_path / "run"))
    group = sandbox.evolving_llm.group_of[TaskType.TREND_PREDICTION]
    first, second = (m.adapter for m in sandbox.evolving_llm.members[TaskType.TREND_PREDICTION])
    want = trained.state("trend_prediction")
    got = group.adapters.state(first)
    assert group.adapters.settings(first).rank == 4
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert any(not torch.equal(group.adapters.state(second)[k], want[k]) for k in want)
    sandbox.simulate_step()
    (tmp_path / "run" / "adapters" / "user_engagement" / "adapter_config.json").unlink()
    with pytest.raises(ValueError, match="adapters_dir.*user_engagement"):
        _sandbox(tmp_path, adapters_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="adapters_dir"):
        _sandbox(tmp_path, adapters_dir=3)
