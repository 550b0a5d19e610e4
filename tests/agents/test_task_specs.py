"""Task specs: system prompts without copyable answers, completions of full answers."""

from __future__ import annotations

import re

import pytest

from sandbox_rl.agents.task_specs import TASK_SPECS, spec
from sandbox_rl.enums import TaskType
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.heuristics import heuristic_action
from sandbox_rl.envs.tasks import make_tasks
from sandbox_rl.envs.topics import TOPIC_NAMES


@pytest.mark.parametrize("task", list(TaskType))
def test_system_prompts_hold_no_concrete_answer(task: TaskType) -> None:
    text = spec(task).system_prompt
    assert not any(name in text.lower() for name in TOPIC_NAMES), text
    assert not re.search(r"\d\.\d|user \d|\d{3}", text), text


@pytest.mark.parametrize("task", list(TaskType))
def test_completion_of_a_full_answer_restores_it(task: TaskType) -> None:
    s = spec(task)
    answer = s.answer_start("obs") + " sports > humor"
    assert s.answer("obs", s.completion("obs", answer)) == answer


def test_every_task_stops_at_a_stop_string() -> None:
    assert all(s.sampling.stop for s in TASK_SPECS.values())


def _engagement_observations(steps: int):
    """user_engagement's text observations of ``steps`` steps of a small world (campaigns by
    its heuristic, so fatigue reorders the table), with the heuristic's action of each."""
    env = oasis_v0.parallel_env(num_users=200, obs_mode="text", attach_tweets=False)
    observations, _ = env.reset(seed=3)
    found = []
    for _ in range(steps):
        actions = {a: heuristic_action(a, env.vector_observation(a)) for a in env.agents}
        found.append((observations["user_engagement"], actions["user_engagement"]))
        observations, *_ = env.step(actions)
    return found


def test_engagement_answers_a_row_and_the_env_reads_its_segment() -> None:
    """The model answers a row of the numbered segment table; the env receives that row's
    segment, and an env answer (the heuristic's) becomes the row the model would write."""
    s, task = spec(TaskType.USER_ENGAGEMENT), make_tasks()["user_engagement"]
    for observation, action in _engagement_observations(4):
        rows = re.findall(r"^(\d)\. ([a-z]+):", observation, re.MULTILINE)
        assert [row for row, _ in rows] == list("1234567890")
        assert sorted(name for _, name in rows) == sorted(TOPIC_NAMES)
        for row, name in rows:
            answer = s.answer(observation, f"{row} intensity=2")
            assert answer == f"segment={name} intensity=2"
            assert task.parse(answer).action.tolist() == [TOPIC_NAMES.index(name), 2]
            assert s.completion(observation, answer) == f"{row} intensity=2"
        written = task.format_action(action)
        assert s.answer(observation, s.completion(observation, written)) == written
        assert s.answer(observation, "none") == "segment=none"
        assert s.completion(observation, "segment=none") == "none"


def test_engagement_row_missing_from_the_table_reaches_the_env_as_written() -> None:
    s, task = spec(TaskType.USER_ENGAGEMENT), make_tasks()["user_engagement"]
    answer = s.answer("no table in this observation", "1 intensity=3")
    assert answer == "row=1 intensity=3"
    parsed = task.parse(answer)
    assert parsed.action is None and "segment" in parsed.reason
