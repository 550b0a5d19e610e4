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
def test_example_runs(argv, expect, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path))  # SB3's logger folder, else a new /tmp/SB3-*
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    assert expect in capsys.readouterr().out


GUIDE_ARGS = ["--model", "tiny-llama", "--users", "100", "--threads", "1"]


@pytest.mark.parametrize("argv,expect,written", [
    (["examples/guide_quickstart.py", "--steps", "2", "--evolution-interval", "2",
      "--pool-size", "2", "--log-dir", "{tmp}/logs"],
     ["step 2: evolution step 1 |", "trend_prediction="], "logs/metrics.jsonl"),
    (["examples/guide_strategies.py", "--strategy", "adaptive_compression", "--steps", "2",
      "--evolution-interval", "1", "--pool-size", "2", "--log-dir", "{tmp}/logs"],
     ["event lora_rank: task=", "adaptive_compression: 2 evolution steps"], "logs/metrics.jsonl"),
    (["examples/guide_advanced.py", "--steps", "2", "--out", "{tmp}"],
     ["load_state -> True (at step 2)", "model pool size: 3",
      "performance score: "], "state/manifest.json"),
    (["examples/guide_complete.py", "--steps", "3", "--pool-size", "2", "--out", "{tmp}"],
     ["=== 最终结果 ===\n总步骤: 3", "模型池大小: 2", "状态已保存: True"],
     "final_state/manifest.json"),
], ids=["quickstart", "strategies", "advanced", "complete"])
def test_guide_example_runs(argv, expect, written, tmp_path, monkeypatch, capsys):
    import torch

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv] + GUIDE_ARGS
    monkeypatch.setattr(sys, "argv", argv)
    threads = torch.get_num_threads()
    try:
        runpy.run_path(argv[0], run_name="__main__")
    finally:
        torch.set_num_threads(threads)  # --threads is process-wide; later tests keep theirs
    out = capsys.readouterr().out
    assert all(e in out for e in expect), out
    assert (tmp_path / written).is_file()


def test_guide_strategies_rejects_an_unknown_strategy(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["examples/guide_strategies.py", "--strategy", "greedy"])
    with pytest.raises(SystemExit):
        runpy.run_path("examples/guide_strategies.py", run_name="__main__")
    assert "invalid choice: 'greedy'" in capsys.readouterr().err
