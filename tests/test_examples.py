"""Every example runs on a tiny budget."""

from __future__ import annotations

import runpy
import sys

import pytest


@pytest.mark.parametrize("argv,expect", [
    (["examples/quickstart.py", "--users", "200", "--steps", "3"], "mean reward"),
    (["examples/llm_agents.py", "--model", "tiny-llama", "--users", "200", "--steps", "2"],
     "trend_prediction"),
])
def test_example_runs(argv, expect, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    assert expect in capsys.readouterr().out
