"""The held-out evaluation protocol: every arm on the same steps, open and closed loop, the
figures' statistics, and adapters loaded from a run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import stats

from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import load_model
from sandbox_rl.agents.task_specs import spec
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.counterfactual import Counterfactual
from sandbox_rl.training.protocol import (DEFAULT_SEEDS, TASKS, ArmResult, ProtocolConfig,
                                          ProtocolReport, evaluate_run,
                                          gap_closed, paired_difference, play_closed, play_open,
                                          run_protocol)
from sandbox_rl.training.task_episodes import collect_episode, evaluate, greedy

torch.set_num_threads(1)

SEEDS = (1000, 1001)
SMALL = dict(seeds=SEEDS, steps=2, users=200)
UE = "user_engagement"


def _campaign(task, task_spec, observations, seed):
    """An agent that runs the strongest campaign at every step (it changes the world)."""
    return ["segment=entertainment intensity=3"] * len(observations)


def _silent(task, task_spec, observations, seed):
    return [""] * len(observations)


def _heuristic_text(task: str, config: ProtocolConfig):
    """An answerer writing the heuristic's action of each step as text (looked up by prompt)."""
    text = {}
    for seed in config.seeds:
        episode = collect_episode(task, seed, config.steps, config.users)
        parser = episode.scorer.scratch.tasks[task]
        for step in episode.steps:
            text[step.observation] = parser.format_action(step.baselines["heuristic"])
    return lambda task_, task_spec, observations, seed: [text[o] for o in observations]


def test_config_defaults_and_checks() -> None:
    config = ProtocolConfig(tasks="all")
    assert config.tasks == TASKS and config.seeds == DEFAULT_SEEDS == tuple(range(1000, 1020))
    assert config.arms == ("agents", "heuristic", "random")
    assert ProtocolConfig(tasks=("trend_prediction",), sampled=2).arms[1] == "sampled"
    assert ProtocolConfig(seeds=np.arange(1000, 1002)).seeds == (1000, 1001)  # JSON-ready ints
    for bad, field in [(dict(tasks=("nope",)), "tasks"), (dict(seeds=(1000, 1000)), "seeds"),
                       (dict(seeds=()), "seeds"), (dict(loop="half"), "loop"),
                       (dict(steps=0), "steps"), (dict(users=5), "users"),
                       (dict(recsys="tiktok"), "recsys"), (dict(sampled=-1), "sampled"),
                       (dict(world={"colour": 1}), "world")]:
        with pytest.raises(ValueError, match=f"invalid {field}="):
            ProtocolConfig(**bad)


def test_open_loop_arms_see_the_same_steps() -> None:
    task = "trend_prediction"
    config = ProtocolConfig(tasks=(task,), sampled=1, **SMALL)
    report = evaluate_run(config, None, model="tiny-llama")
    adapters = TaskAdapters(load_model("tiny-llama"), [task], LoraSettings(), 0)
    episodes = [collect_episode(task, seed, 2, 200) for seed in SEEDS]
    for kind in ("heuristic", "random"):
        assert report.result(task, kind).per_world == tuple(e.baseline(kind) for e in episodes)
    mine = [evaluate(adapters, task, [e], greedy(spec(task))) for e in episodes]
    agents = report.result(task, "agents")
    assert agents.per_world == tuple(e.mean_reward for e in mine)
    assert agents.parse_rate == np.mean([e.parse_rate for e in mine])
    assert report.result(task, "sampled").parse_rate is not None
    assert report.result(task, "heuristic").parse_rate is None


def test_agents_answering_the_heuristic_score_as_the_heuristic() -> None:
    config = ProtocolConfig(tasks=(UE,), **SMALL)
    report = run_protocol(config, _heuristic_text(UE, config))
    agents, heuristic = report.result(UE, "agents"), report.result(UE, "heuristic")
    assert agents.per_world == heuristic.per_world
    assert agents.parse_rate == 1.0


def test_closed_loop_with_a_silent_agent_replays_the_open_loop() -> None:
    config = ProtocolConfig(tasks=(UE,), **SMALL)
    opened = run_protocol(config, _silent)
    closed = run_protocol(ProtocolConfig(tasks=(UE,), loop="closed", **SMALL), _silent)
    for arm in ("agents", "heuristic", "random"):
        assert closed.result(UE, arm).per_world == opened.result(UE, arm).per_world


def test_closed_loop_lets_the_agent_drive_the_world() -> None:
    config = ProtocolConfig(tasks=(UE,), seeds=(1000,), steps=3, users=200, loop="closed")
    closed = play_closed(UE, 1000, config, _campaign)
    opened = play_open(UE, 1000, config, _campaign)
    fatigue = [[s.snapshot.arrays["platform.users.fatigue"] for s in run.episode.steps]
               for run in (opened, closed)]
    assert np.array_equal(fatigue[0][0], fatigue[1][0])  # the same world before the first act
    assert not np.array_equal(fatigue[0][-1], fatigue[1][-1])  # then campaigns tire users
    # The agent's reward is the env's own, which is what the step from its snapshot gives.
    assert closed.rewards["agents"] == [closed.episode.score(i, a)
                                        for i, a in enumerate(closed.answers)]
    # The baselines are scored on the closed-loop world's snapshots, by a fresh scorer too.
    env = oasis_v0.parallel_env(num_users=200, max_cycles=3, obs_mode="text", text_agents=[UE])
    scorer = Counterfactual(env)
    for kind in ("heuristic", "random"):
        assert closed.rewards[kind] == [
            scorer.rewards(s.snapshot, {**s.others, UE: s.baselines[kind]}, [UE])[UE]
            for s in closed.episode.steps]
    assert closed.rewards["heuristic"] != opened.rewards["heuristic"]


def _report(per_world: dict[str, tuple[float, ...]], seeds=(1000, 1001, 1002)):
    results = tuple(ArmResult("trend_prediction", arm, seeds, values,
                              0.5 if arm == "agents" else None)
                    for arm, values in per_world.items())
    return ProtocolReport(ProtocolConfig(tasks=("trend_prediction",), seeds=seeds), results,
                          "untrained", "tiny-llama")


def test_json_lines_intervals_and_gap(tmp_path) -> None:
    report = _report({"agents": (0.6, 0.7, 0.9), "heuristic": (0.5, 0.8, 0.6),
                      "random": (0.1, 0.3, 0.2)})
    lines = {line["arm"]: line for line in report.json_lines()}
    assert set(lines) == {"agents", "heuristic", "random"}
    agents = lines["agents"]
    for key in ("task", "arm", "mean", "seeds", "per_world", "parse_rate", "minus_heuristic",
                "minus_random", "gap_closed", "loop", "steps", "users", "recsys", "adapters"):
        assert key in agents
    assert agents["per_world"] == [0.6, 0.7, 0.9] and agents["seeds"] == [1000, 1001, 1002]
    d = np.array([0.6, 0.7, 0.9]) - np.array([0.5, 0.8, 0.6])
    lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert agents["minus_heuristic"]["mean"] == pytest.approx(d.mean())
    assert agents["minus_heuristic"]["ci95"] == pytest.approx([lo, hi])
    assert agents["gap_closed"] == pytest.approx((0.7333333 - 0.2) / (0.6333333 - 0.2), 1e-5)
    assert lines["random"]["parse_rate"] is None and lines["heuristic"]["gap_closed"] == 1.0
    saved = report.save(tmp_path / "sub" / "eval.jsonl").read_text().splitlines()
    assert [json.loads(s) for s in saved] == report.json_lines()
    assert report.table().row_count == 1


def test_single_world_and_no_gap() -> None:
    d = paired_difference([0.3], [0.1])
    assert d.mean == pytest.approx(0.2) and d.as_dict()["ci95"] == [d.mean, d.mean]
    assert gap_closed(0.4, 0.5, 0.5) is None
    line = _report({"agents": (0.4,), "heuristic": (0.5,), "random": (0.5,)},
                   seeds=(1000,)).json_lines()[0]
    assert line["gap_closed"] is None
    assert line["minus_random"]["ci95"] == pytest.approx([-0.1, -0.1])


def test_saved_adapters_load_and_a_missing_one_is_named(tmp_path) -> None:
    task = "trend_prediction"
    adapters = TaskAdapters(load_model("tiny-llama"), [task], LoraSettings(rank=4), 3)
    with torch.no_grad():  # a trained-looking adapter: B no longer 0
        for p in adapters.parameters(task):
            p.add_(0.01)
    adapters.save(tmp_path / "run")
    config = ProtocolConfig(tasks=(task,), seeds=(1000,), steps=2, users=200)
    report = evaluate_run(config, tmp_path / "run", model="tiny-llama")
    assert report.adapters == str(tmp_path / "run")
    assert report.json_lines()[0]["adapters"] == str(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match=f"{UE}.*{tmp_path / 'run'}"):
        evaluate_run(ProtocolConfig(tasks=(task, UE), seeds=(1000,), steps=2, users=200),
                     tmp_path / "run", model="tiny-llama")
    with pytest.raises(FileNotFoundError, match="no adapters folder"):
        evaluate_run(config, tmp_path / "none", model="tiny-llama")


def test_content_generation_has_the_heuristics_text_arm_on_the_same_steps() -> None:
    """The post the env reads through models: the heuristic's action written as text is its own
    arm, scored on the same steps as the others; the tasks whose text is parsed back have none."""
    task = "content_generation"
    config = ProtocolConfig(tasks=(task, UE), seeds=(1000, 1001), steps=2, users=1000)
    report = evaluate_run(config, None, model="tiny-llama")
    episodes = [collect_episode(task, seed, 2, 1000) for seed in (1000, 1001)]
    texts = tuple(float(np.mean([e.score(i, e.heuristic_answer(i)) for i in range(2)]))
                  for e in episodes)
    assert report.result(task, "heuristic_text").per_world == texts
    assert report.result(task, "heuristic").per_world == tuple(e.baseline("heuristic")
                                                               for e in episodes)
    with pytest.raises(KeyError):
        report.result(UE, "heuristic_text")
    lines = {(x["task"], x["arm"]): x for x in report.json_lines()}
    agents = lines[(task, "agents")]
    d = np.array(agents["per_world"]) - np.array(texts)
    assert agents["minus_heuristic_text"]["mean"] == pytest.approx(d.mean())
    assert "minus_heuristic_text" not in lines[(UE, "agents")]
