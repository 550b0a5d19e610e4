"""Task specs: system prompts without copyable answers, completions of full answers."""

from __future__ import annotations

import re

import pytest

from sandbox_rl.agents.task_specs import TASK_SPECS, spec
from sandbox_rl.enums import TaskType
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
