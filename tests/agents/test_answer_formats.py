"""Saved task adapters record their answer format; loading one trained for another warns."""

from __future__ import annotations

import json
import warnings

import pytest

from sandbox_rl.agents import answer_formats
from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import load_model
from sandbox_rl.agents.task_specs import spec

NAMES = ["user_engagement", "trend_prediction__1", "meta"]


@pytest.fixture(scope="module")
def adapters() -> TaskAdapters:
    return TaskAdapters(load_model("tiny-llama"), NAMES, LoraSettings(rank=2))


def _stale_warnings(load) -> list[str]:
    """The answer-format warnings ``load()`` gives (every one: no once-per-place filter)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load()
    return [str(w.message) for w in caught if "answer format" in str(w.message)]


def test_save_records_each_task_adapters_current_format(adapters, tmp_path):
    adapters.save(tmp_path)
    recorded = json.loads((tmp_path / answer_formats.FILE).read_text())
    assert recorded == {"user_engagement": spec("user_engagement").format_version,
                        "trend_prediction__1": spec("trend_prediction").format_version}
    assert spec("user_engagement").format_version == 2  # rows of the table, not names


def test_loading_current_adapters_does_not_warn(adapters, tmp_path):
    adapters.save(tmp_path)
    assert _stale_warnings(lambda: adapters.load(tmp_path)) == []


def test_an_adapter_saved_before_formats_were_recorded_warns_for_its_changed_task(
        adapters, tmp_path):
    adapters.save(tmp_path)
    (tmp_path / answer_formats.FILE).unlink()  # as every save before formats were recorded
    messages = _stale_warnings(lambda: adapters.load(tmp_path))
    assert len(messages) == 2  # both tasks of the fixture changed format since
    for task in ("user_engagement", "trend_prediction"):
        [message] = [m for m in messages if str(tmp_path / task) in m]
        assert f"answer format 1 of {task}" in message and "now use format 2" in message
        assert f"sandbox-rl train agents --tasks {task}" in message


def test_a_loaded_adapter_of_an_older_format_warns(adapters, tmp_path):
    adapters.save(tmp_path)
    (tmp_path / answer_formats.FILE).write_text(json.dumps({"user_engagement": 1}))
    other = TaskAdapters(load_model("tiny-llama"), ["user_engagement__0"], LoraSettings(rank=2))
    found = _stale_warnings(lambda: other.load_from(tmp_path / "user_engagement",
                                                    "user_engagement__0"))
    assert len(found) == 1


def test_an_unreadable_record_is_named(tmp_path):
    (tmp_path / "user_engagement").mkdir()
    (tmp_path / answer_formats.FILE).write_text("[1, 2]")
    reason = answer_formats.stale(tmp_path / "user_engagement")
    assert reason is not None and answer_formats.FILE in reason


@pytest.mark.parametrize("name,task", [("user_engagement", "user_engagement"),
                                       ("trend_prediction__3", "trend_prediction"),
                                       ("meta", None), ("default", None)])
def test_task_of_adapter_names(name, task):
    found = answer_formats.task_of(name)
    assert (found.value if found else None) == task


def test_the_record_travels_with_adapters_shipped_to_ray_actors(adapters, tmp_path):
    """``evaluate --ray-address`` ships each task's adapter folder as bytes; without the record
    an actor would take current adapters for ones saved before formats were recorded."""
    from sandbox_rl.training.protocol_ray import folder_bytes

    adapters.save(tmp_path / "saved")
    files = folder_bytes(tmp_path / "saved", ("user_engagement",))
    assert answer_formats.FILE in files
    for name, data in files.items():  # as the actor writes them
        (tmp_path / "actor" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "actor" / name).write_bytes(data)
    assert answer_formats.stale(tmp_path / "actor" / "user_engagement") is None
