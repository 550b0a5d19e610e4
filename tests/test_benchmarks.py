"""Benchmark scripts run on scaled-down shapes (their figures are measured elsewhere)."""

from __future__ import annotations

import json
import runpy
import sys


def test_gpu_multi_adapter_runs_scaled_down(monkeypatch, capsys):
    argv = ["benchmarks/gpu_multi_adapter.py", "--tiny", "--prompt-tokens", "16", "--new-tokens",
            "4", "--rows-per-adapter", "1", "--kv-tokens", "128", "--kv-decode", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    figures = {line["metric"]: line for line in lines}
    for mode in ("base", "fused", "peft", "sequential"):
        assert figures[f"gpu_tokens_per_s_{mode}"]["value"] > 0
    assert figures["gpu_kv_cache_bytes_quanto4"]["ratio_dense_over"] > 3
    assert 1.9 < figures["gpu_kv_cache_bytes_fp8"]["ratio_dense_over"] <= 2.0  # bf16 -> fp8 + scales


def test_evolution_benchmark_emits_every_strategy_figure(monkeypatch, capsys, tmp_path):
    argv = ["benchmarks/evolution.py", "--model", "tiny-llama", "--threads", "1", "--steps", "2",
            "--users", "100", "--pool", "2", "--updates", "1", "--prompts", "2",
            "--train-seeds", "0", "--eval-seeds", "1000", "1001", "--tasks", "trend_prediction",
            "--meta-tasks", "trend_prediction", "user_engagement", "--meta-iterations", "1",
            "--adapt-updates", "1", "--eval-samples", "1", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    keys = {"strategy", "task", "metric", "evolved_mean", "baseline_mean", "ci95_low",
            "ci95_high", "seeds"}
    assert all(keys <= line.keys() and line["seeds"] == [1000, 1001] for line in lines)
    assert {line["strategy"] for line in lines} == {"multi_model", "gradient_based",
                                                    "adaptive_compression", "meta_learning"}
    figures = {(line["strategy"], line["metric"]): line for line in lines}
    saved = figures[("adaptive_compression", "adapter_plus_kv_bytes_at_512_tokens")]
    assert saved["baseline_mean"] > saved["evolved_mean"] > 0  # halved rank, 2-bit cache
    assert figures[("meta_learning", "updates_to_target")]["evolved_mean"] in (0, 1, 2)


def test_evolution_benchmark_scores_a_finished_run_on_other_worlds(monkeypatch, capsys,
                                                                    tmp_path):
    from sandbox_rl.training.llm_ppo import LLMPPOConfig, train_llm_ppo

    run = tmp_path / "run"
    train_llm_ppo(LLMPPOConfig(model="tiny-llama", tasks=("user_engagement",), updates=1,
                               prompts_per_update=2, samples_per_prompt=2, train_seeds=(0,),
                               eval_seeds=(1000,), steps=2, users=100, eval_samples=1,
                               threads=1, out=str(run), quiet=True))
    argv = ["benchmarks/evolution.py", "--strategies", "gradient_based", "--trained-run",
            str(run), "--eval-seeds", "1003", "1004", "--threads", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert {line["metric"] for line in lines} == {"held_out_reward_greedy",
                                                  "held_out_reward_sampled", "parse_rate"}
    assert all(line["seeds"] == [1003, 1004] and line["task"] == "user_engagement"
               for line in lines)
    sampled = next(line for line in lines if line["metric"] == "held_out_reward_sampled")
    assert sampled["samples_per_prompt"] == 2 and sampled["trained_run"] == str(run)


def _meta_only(monkeypatch, capsys, folder, iterations: int, *extra: str):
    """Run the meta_learning benchmark on the tiny model; its captured (out, err)."""
    argv = ["benchmarks/evolution.py", "--strategies", "meta_learning", "--model", "tiny-llama",
            "--threads", "1", "--steps", "2", "--users", "100", "--prompts", "2",
            "--train-seeds", "0", "--meta-tasks", "trend_prediction", "user_engagement",
            "--meta-iterations", str(iterations), "--meta-targets", "--meta-dir", str(folder),
            *extra]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(argv[0], run_name="__main__")
    return capsys.readouterr()


def test_meta_initialisation_resumes_from_its_checkpoint(monkeypatch, capsys, tmp_path):
    import pytest
    import torch
    from safetensors.torch import load_file

    _meta_only(monkeypatch, capsys, tmp_path / "resumed", 1)
    log = _meta_only(monkeypatch, capsys, tmp_path / "resumed", 2).err
    assert "resumed from" in log and "after 1 iterations" in log
    _meta_only(monkeypatch, capsys, tmp_path / "straight", 2)
    resumed, straight = (load_file(str(tmp_path / name / "meta_init.safetensors"))
                         for name in ("resumed", "straight"))
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in resumed)
    moved = [k for k in resumed if k.startswith("meta/")
             and not torch.equal(resumed[k], resumed["fresh/" + k[5:]])]
    assert moved  # two Reptile iterations changed the initialisation
    with pytest.raises(SystemExit, match="--lr"):
        _meta_only(monkeypatch, capsys, tmp_path / "resumed", 3, "--lr", "0.001")
    (tmp_path / "straight" / "meta_init.safetensors").write_bytes(b"half a file")
    with pytest.raises(SystemExit, match="not a readable meta-initialisation"):
        _meta_only(monkeypatch, capsys, tmp_path / "straight", 3)


def test_meta_worlds_score_alike_alone_and_combine_into_one_run(monkeypatch, capsys, tmp_path):
    import json

    import pytest

    from sandbox_rl.training import llm_ppo

    adapt = ("--meta-targets", "user_engagement", "--adapt-updates", "1", "--eval-samples", "1")
    _meta_only(monkeypatch, capsys, tmp_path / "init", 1)
    updates = []  # (world, learner seed, prompt generator state) of every adaptation update
    real_update = llm_ppo.episode_update

    def recorded(learner, adapter, episodes, prompts, rng, task_spec):
        updates.append((episodes[0].seed, learner.settings.seed, str(rng.bit_generator.state)))
        return real_update(learner, adapter, episodes, prompts, rng, task_spec)

    monkeypatch.setattr(llm_ppo, "episode_update", recorded)

    def run(*seeds: str) -> list[dict]:
        out = _meta_only(monkeypatch, capsys, tmp_path / "init", 1, *adapt, "--eval-seeds",
                         *seeds).out
        return [json.loads(line) for line in out.splitlines()]

    both = run("1000", "1001")
    in_list = list(updates)
    for seed in ("1000", "1001"):
        lines = run(seed)
        (tmp_path / f"{seed}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert len(in_list) == 4 and updates[4:] == in_list  # a world alone = in a list
    after = next(x for x in both if x["metric"] == "held_out_reward_after_adaptation")
    assert [len(c) for c in after["curves"]["meta"]] == [2, 2]
    monkeypatch.setattr(sys, "argv", ["benchmarks/evolution.py", "--combine",
                                      str(tmp_path / "1000.jsonl"), str(tmp_path / "1001.jsonl")])
    runpy.run_path("benchmarks/evolution.py", run_name="__main__")
    combined = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert combined == both
    assert {x["metric"] for x in combined} == {"updates_to_target", "held_out_reward_after_adaptation",
                                               "held_out_reward_before_adaptation"}
    monkeypatch.setattr(sys, "argv", ["benchmarks/evolution.py", "--combine",
                                      str(tmp_path / "1000.jsonl"), str(tmp_path / "1000.jsonl")])
    with pytest.raises(SystemExit, match=r"worlds \[1000\] are in two runs"):
        runpy.run_path("benchmarks/evolution.py", run_name="__main__")
    other = [dict(x, adapt_updates=2) for x in both]
    (tmp_path / "other.jsonl").write_text("".join(json.dumps(x) + "\n" for x in other))
    monkeypatch.setattr(sys, "argv", ["benchmarks/evolution.py", "--combine",
                                      str(tmp_path / "1000.jsonl"), str(tmp_path / "other.jsonl")])
    with pytest.raises(SystemExit, match=r"other \['adapt_updates'\]"):
        runpy.run_path("benchmarks/evolution.py", run_name="__main__")
