"""Every example runs on a tiny budget."""

from __future__ import annotations

import importlib.util
import runpy
import sys

import pytest


@pytest.mark.parametrize("argv,expect", [
    (["examples/quickstart.py", "--users", "200", "--steps", "3"], "mean reward"),
    (["examples/llm_agents.py", "--model", "tiny-llama", "--users", "200", "--steps", "2"],
     "trend_prediction"),
    (["examples/sb3_ppo.py", "--task", "trend_prediction", "--timesteps", "64", "--users", "200",
      "--episode-steps", "16", "--n-envs", "2", "--n-steps", "32", "--eval-episodes", "2",
      "--eval-steps", "5"], "heuristic"),
    (["examples/supersuit_ppo.py", "--timesteps", "160", "--users", "200", "--episode-steps",
      "16", "--n-envs", "1", "--n-steps", "16", "--eval-episodes", "2", "--eval-steps", "5"],
     "behavior_analysis"),
    pytest.param(["examples/rllib_ppo.py", "--iterations", "1", "--users", "200",
                  "--episode-steps", "10", "--num-env-runners", "0", "--train-batch-size", "40",
                  "--eval-episodes", "2", "--eval-steps", "5"], "user_engagement",
                 marks=pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                          reason="extra rllib not installed")),
])
def test_example_runs(argv, expect, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    assert expect in capsys.readouterr().out
