"""``sandbox-rl evaluate``: JSON lines on stdout, saved lines, one-line usage errors."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import load_model
from sandbox_rl.cli import main

torch.set_num_threads(1)

BASE = ["evaluate", "--model", "tiny-llama", "--tasks", "trend_prediction", "--seeds",
        "1000-1001", "--steps", "2", "--users", "200", "--threads", "1"]


def _exit_status(argv: list[str]) -> int:
    """The status ``main`` returns, or the one argparse exits with."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_json_lines_on_stdout_and_saved(tmp_path, capsys) -> None:
    out = tmp_path / "eval.jsonl"
    assert main([*BASE, "--adapters", "untrained", "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["arm"] for line in lines] == ["agents", "heuristic", "random"]
    assert all(line["seeds"] == [1000, 1001] and len(line["per_world"]) == 2 for line in lines)
    assert lines[0]["adapters"] == "untrained" and lines[0]["loop"] == "open"
    assert "Held-out evaluation" in captured.err  # the table, off stdout
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines


@pytest.mark.parametrize(("argv", "flag"), [
    (["--seeds", "1001-1000"], "--seeds"),
    (["--seeds", "ten"], "--seeds"),
    (["--seeds", "1000", "1000"], "--seeds"),
    (["--tasks", "tweeting"], "--tasks"),
    (["--tasks", "all", "trend_prediction"], "--tasks"),
    (["--loop", "half"], "--loop"),
    (["--workers", "2"], "--workers"),          # without --ray-address
    (["--ray-address", " "], "--ray-address"),
])
def test_bad_flag_is_a_one_line_usage_error(argv: list[str], flag: str, capsys) -> None:
    assert _exit_status([*BASE, "--adapters", "untrained", *argv]) == 2
    err = capsys.readouterr().err
    assert flag in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_adapters_are_a_usage_error(tmp_path, capsys) -> None:
    assert _exit_status([*BASE, "--adapters", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "--adapters" in err and "nowhere" in err and err.count("\n") == 1
    assert _exit_status([*BASE, "--adapters", str(tmp_path)]) == 2  # no trend_prediction/
    err = capsys.readouterr().err
    assert "--adapters" in err and "trend_prediction" in err and err.count("\n") == 1


def test_saved_adapters_dir_loads(tmp_path, capsys) -> None:
    TaskAdapters(load_model("tiny-llama"), ["trend_prediction"], LoraSettings()).save(tmp_path)
    assert main([*BASE, "--adapters", str(tmp_path), "--loop", "closed"]) == 0
    out = capsys.readouterr().out
    assert "trend_prediction" in out and "closed loop" in out


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="ray is installed")
def test_ray_address_without_ray_names_the_extra(capsys) -> None:
    assert _exit_status([*BASE, "--adapters", "untrained", "--ray-address", "local"]) == 1
    err = capsys.readouterr().err
    assert ".[rllib]" in err and "Traceback" not in err and err.count("\n") == 1


def test_ray_address_nobody_answers_at_is_a_usage_error(capsys) -> None:
    import socket

    with socket.socket() as s:  # bound, not listening: refused at once
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
        assert _exit_status([*BASE, "--adapters", "untrained", "--ray-address", address]) == 2
    err = capsys.readouterr().err
    assert "--ray-address" in err and "nothing answers there" in err and err.count("\n") == 1
