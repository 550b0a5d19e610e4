"""Every example runs on a tiny budget."""

from __future__ import annotations

import runpy
import sys

import pytest


@pytest.mark.parametrize("argv", [["examples/quickstart.py", "--users", "200", "--steps", "3"]])
def test_example_runs(argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    out = capsys.readouterr().out
    assert "mean reward" in out
