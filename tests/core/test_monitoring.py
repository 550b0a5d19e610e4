"""Monitoring: per-step JSONL and TensorBoard scalars."""

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sandbox_rl.core.experience import TaskResponse
from sandbox_rl.core.monitoring import Monitor


def _result(step: int, score: float, answer: str = "sports > politics") -> dict:
    response = TaskResponse(text=answer, completion=answer, completion_tokens=3,
                            finish_reason="stop")
    task = {"performance_score": score, "heuristic_score": 0.5, "random_score": 0.1,
            "adapter": "a", "parse_error": "", "response": response}
    return {"step": step, "tasks": {"trend_prediction": task}, "network_state": {"users": 10},
            "evolution_stats": {"evolution_step": 0}, "events": [], "seconds": 0.1}


def test_a_resumed_run_shows_each_step_once_in_tensorboard(tmp_path):
    first = Monitor(tmp_path)
    for step in (1, 2, 3, 4):  # steps 3 and 4 were logged after the last checkpoint (step 2)
        first.log(_result(step, 0.1 * step))
    first.close()
    resumed = Monitor(tmp_path)
    for step in (3, 4):
        resumed.log(_result(step, 0.9))
    resumed.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = [(e.step, round(e.value, 3)) for e in events.Scalars("score/trend_prediction")]
    assert scalars == [(1, 0.1), (2, 0.2), (3, 0.9), (4, 0.9)]


def test_each_step_logs_every_tasks_answer_as_the_env_parsed_it(tmp_path):
    monitor = Monitor(tmp_path)
    monitor.log(_result(1, 0.5, answer="user 1: post\nuser 2: lurk"))
    monitor.log(_result(2, 0.7, answer="user 1: inactive"))
    monitor.close()
    lines = (tmp_path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    answers = [json.loads(line)["answers"] for line in lines]
    assert answers == [{"trend_prediction": "user 1: post\nuser 2: lurk"},
                       {"trend_prediction": "user 1: inactive"}]
