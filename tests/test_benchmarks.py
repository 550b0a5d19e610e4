"""Benchmark scripts run on scaled-down shapes (their figures are measured elsewhere)."""

from __future__ import annotations

import json
import runpy
import sys

import pytest


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


EVOLUTION = "benchmarks/evolution.py"
SEEDS = [1000, 1001, 1002]
LINE_KEYS = {"strategy", "task", "metric", "evolved", "baseline", "evolved_mean", "baseline_mean",
             "difference", "difference_is", "ci95_low", "ci95_high", "seeds", "per_world",
             "settings"}
# The tiny model, three held-out worlds and budgets of seconds: the lines' shape, not figures
# (4 states a round: train_agents' PPO phase draws 4 states without replacement).
TINY = ["--model", "tiny-llama", "--threads", "1", "--users", "100", "--seeds",
        *map(str, SEEDS), "--minutes", "0.04", "--states-per-round", "4", "--world-steps", "2",
        "--update-states", "2"]


def _evolution_lines(monkeypatch, capsys, *args: str) -> list[dict]:
    monkeypatch.setattr(sys, "argv", [EVOLUTION, *args])
    runpy.run_path(EVOLUTION, run_name="__main__")
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()
            if line.startswith("{")]


def _check_shape(lines: list[dict]) -> dict:
    """Every line's keys, worlds and per-world lists; the lines by (strategy, task, metric)."""
    for line in lines:
        assert LINE_KEYS <= line.keys(), line["metric"]
        assert line["seeds"] == SEEDS
        assert len(line["per_world"]["evolved"]) == len(line["per_world"]["baseline"]) == 3
        assert line["ci95_low"] - 1e-9 <= line["difference"] <= line["ci95_high"] + 1e-9
        assert line["baseline"] and line["settings"]["answers"] == "greedy"
    figures = {(x["strategy"], x["task"], x["metric"]): x for x in lines}
    assert len(figures) == len(lines)  # one line per (strategy, task, metric)
    return figures


def test_evolution_benchmark_emits_every_strategy_line(monkeypatch, capsys, tmp_path):
    # --quick takes no adaptation update: one is asked for, to check the curves' shape.
    lines = _evolution_lines(monkeypatch, capsys, "--quick", *TINY, "--adapt-updates", "1",
                             "--out", str(tmp_path))
    figures = _check_shape(lines)
    # --quick's tasks and meta target: the ones whose first step carries signal.
    first, tasks = "behavior_analysis", ("behavior_analysis", "network_optimization")
    target = "content_generation"
    expected = {("gradient_based", t, f"held_out_reward_trained_vs_{b}") for t in tasks
                for b in ("untrained", "heuristic", "random")}
    expected |= {("multi_model", first, f"routing_reward_vs_{b}")  # --quick: the first task
                 for b in ("member0", "heuristic", "best_member_in_hindsight")}
    expected |= {("adaptive_compression", first, m) for m in (
        "held_out_reward_lora_rank_halved", "bytes_lora_rank_halved",
        "held_out_reward_kv_cache_2_bits", "bytes_kv_cache_2_bits")}
    expected |= {("meta_learning", target, f"held_out_reward_after_{k}_updates")
                 for k in (0, 1)}
    assert figures.keys() == expected

    def per_world(key, arm="evolved"):
        return figures[key]["per_world"][arm]

    trained = ("gradient_based", first, "held_out_reward_trained_vs_untrained")
    routing = figures[("multi_model", first, "routing_reward_vs_member0")]
    members = routing["members"]
    assert [m["member"] for m in members] == [0, 1, 2] and sum(m["pulls"] for m in members) == 3
    # The pool's members and the compressed arms answer the protocol's own steps.
    assert members[0]["per_world"] == per_world(trained, "baseline")
    assert members[1]["per_world"] == per_world(trained)
    assert per_world(("adaptive_compression", first, "held_out_reward_lora_rank_halved"),
                     "baseline") == per_world(trained)
    for metric in ("bytes_lora_rank_halved", "bytes_kv_cache_2_bits"):
        line = figures[("adaptive_compression", first, metric)]
        assert line["baseline_mean"] > line["evolved_mean"] > 0 and line["ci95_low"] > 0
        assert 0 < line["saved_share_of_rss"] < 1 and line["rss_bytes"] > 0
    last = figures[("meta_learning", target, "held_out_reward_after_1_updates")]
    assert [len(c) for c in last["curves"].values()] == [2, 2]
    phases = last["updates"]
    # Reptile meta-trains on the other tasks only (here --tasks): the target is new.
    assert last["settings"]["meta_tasks"] == list(tasks)
    assert len(phases["reptile"]["meta_phase"]) == len(phases["sequential"]["meta_phase"]) \
        == 3 * len(tasks)  # three iterations, one inner update per task
    assert last["settings"]["steps_per_world"] == 8  # the target's figure: 8 steps per world
    assert figures[trained]["settings"]["steps_per_world"] == 1
    assert len(phases["reptile"]["adaptation"]) == len(phases["sequential"]["adaptation"]) == 1
    assert (tmp_path / "agents" / "adapters" / first / "adapter_config.json").is_file()


def test_evolution_benchmark_measures_a_finished_run(monkeypatch, capsys, tmp_path):
    from sandbox_rl.agents.lora import TaskAdapters
    from sandbox_rl.agents.models import load_model

    task = "user_engagement"
    TaskAdapters(load_model("tiny-llama"), [task]).save(tmp_path / "run" / "adapters")
    lines = _evolution_lines(monkeypatch, capsys, *TINY, "--steps", "1", "--strategies",
                             "gradient_based", "multi_model", "--tasks", task, "--pool", "2",
                             "--adapters", str(tmp_path / "run"), "--out", str(tmp_path / "b"))
    figures = _check_shape(lines)
    assert {k[0] for k in figures} == {"gradient_based", "multi_model"}
    assert all(str(tmp_path / "run") in x["evolved"] for x in lines
               if x["strategy"] == "gradient_based")
    assert not (tmp_path / "b" / "agents").exists()  # nothing trained


def test_evolution_benchmark_meta_learning_beside_gives_the_serial_lines(monkeypatch, capsys,
                                                                      tmp_path):
    """meta_learning in its own process (--parallel-meta, --quick's default) prints the lines
    it prints in this one, after the other strategies' lines."""
    from sandbox_rl.agents.lora import TaskAdapters
    from sandbox_rl.agents.models import load_model

    task = "user_engagement"
    TaskAdapters(load_model("tiny-llama"), [task]).save(tmp_path / "run" / "adapters")
    argv = [*TINY, "--steps", "1", "--strategies", "gradient_based", "meta_learning", "--tasks",
            task, "--meta-targets", "trend_prediction", "--meta-iterations", "1",
            "--adapt-updates", "1", "--adapters", str(tmp_path / "run"), "--out",
            str(tmp_path / "b")]
    serial = _evolution_lines(monkeypatch, capsys, *argv, "--no-parallel-meta")
    beside = _evolution_lines(monkeypatch, capsys, *argv, "--parallel-meta")
    assert [x["strategy"] for x in beside] == ["gradient_based"] * 3 + ["meta_learning"] * 2
    assert beside == serial


@pytest.mark.cluster
def test_evolution_benchmark_on_ray_gives_the_serial_lines(ray_cluster, monkeypatch, capsys,
                                                           tmp_path):
    """gradient_based's protocol reports played by Ray actors on the two-node test cluster."""
    import torch

    from sandbox_rl.agents.lora import TaskAdapters
    from sandbox_rl.agents.models import load_model

    task = "user_engagement"
    adapters = TaskAdapters(load_model("tiny-llama"), [task])
    with torch.no_grad():  # away from PEFT's zero start: trained and untrained differ
        for p in adapters.parameters(task):
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    adapters.save(tmp_path / "run" / "adapters")
    argv = [*TINY, "--steps", "2", "--strategies", "gradient_based", "--tasks", task,
            "--adapters", str(tmp_path / "run"), "--out", str(tmp_path / "b")]
    serial = _evolution_lines(monkeypatch, capsys, *argv)
    on_ray = _evolution_lines(monkeypatch, capsys, *argv, "--ray-address", ray_cluster.address,
                              "--workers", "2")
    assert len(serial) == 3 and on_ray == serial


def test_evolution_benchmark_refuses_what_its_figures_cannot_use():
    import pytest

    parse_args = runpy.run_path(EVOLUTION)["parse_args"]
    assert parse_args(["--quick"]).seeds is None  # the registered 1000-1019, all of them
    assert parse_args(["--quick"]).multi_model_tasks == ["behavior_analysis"]
    assert parse_args(["--quick", "--steps", "3"]).steps == 3  # explicit flags win
    quick = parse_args(["--quick"])
    assert (quick.steps, quick.meta_steps) == (1, 8)
    assert (quick.meta_iterations, quick.adapt_updates) == (3, 0)
    assert parse_args(["--steps", "5"]).meta_steps == 5  # the full run: --steps
    assert quick.parallel_meta and not parse_args([]).parallel_meta
    for argv in (["--seeds", "999"], ["--seeds", "1000", "1000"], ["--pool", "1"],
                 ["--multi-model-tasks", "user_engagement"], ["--tasks", "nope"],
                 ["--meta-steps", "0"], ["--workers", "2"]):  # without --ray-address
        with pytest.raises(SystemExit):
            parse_args(argv)


SOAK = "benchmarks/soak.py"
SOAK_KEYS = {"part", "users", "steps", "seconds", "rss_first", "rss_last", "rss_peak", "rss_slope",
             "fds_first", "fds_last", "fds_opened", "fds_before", "fds_after", "fds_held",
             "threads_first", "threads_last", "temp_leaked"}


def test_soak_benchmark_quick_leaks_nothing(monkeypatch, capsys, tmp_path):
    import os
    import tempfile

    import torch

    from sandbox_rl.core.self_evolving_oasis import SelfEvolvingOasis

    # A private temp folder: other processes' temporaries are not this run's leaks.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, os.environ.get(var, "1"))  # the script's setdefault, undone
    step, threads = SelfEvolvingOasis.simulate_step, torch.get_num_threads()
    # 3 episodes of 10 steps (3 resets); 5 evolve steps, a checkpoint after each of steps 1-4
    # (the last three kept).
    argv = [SOAK, "--quick", "--users", "1000", "--steps", "30", "--max-cycles", "10",
            "--evolve-steps", "5", "--checkpoint-every", "1", "--evolve-users", "100",
            "--threads", "1", "--out", str(tmp_path / "run")]
    monkeypatch.setattr(sys, "argv", argv)
    try:
        runpy.run_path(SOAK, run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    env, evolve = lines
    assert SelfEvolvingOasis.simulate_step is step  # the sampler is unhooked
    for line, steps in ((env, 30), (evolve, 5)):
        assert SOAK_KEYS <= line.keys()
        assert line["steps"] == steps and line["temp_leaked"] == []
        assert 0 < line["rss_first"] <= line["rss_peak"] and line["rss_last"] <= line["rss_peak"]
        assert line["fds_first"] == line["fds_last"] and line["fds_opened"] == [], line
        assert line["threads_first"] == line["threads_last"]
    assert (env["part"], env["users"], env["resets"]) == ("env", 1000, 3)
    assert env["fds_after"] == env["fds_before"] and env["fds_held"] == []
    assert (evolve["part"], evolve["model"], evolve["users"]) == ("evolve", "tiny-llama", 100)
    assert evolve["checkpoints_left"] == evolve["checkpoints_expected"] == 3
    assert evolve["checkpoint_steps"] == [2, 3, 4] and evolve["run_temporaries"] == []
    # held after the run: at most matplotlib's font cache (the plots), never the run's files
    assert all("mpl-data/fonts" in target for target in evolve["fds_held"]), evolve["fds_held"]
    assert not list((tmp_path / "tmp").iterdir())


def test_soak_benchmark_quick_settings():
    parse_args = runpy.run_path(SOAK)["parse_args"]
    full, quick = parse_args([]), parse_args(["--quick"])
    assert (full.users, full.steps, full.evolve_steps, full.checkpoint_every, full.model) == (
        1_000_000, 1000, 200, 10, "embedded")
    assert (quick.users, quick.steps, quick.model) == (10_000, 100, "tiny-llama")
    assert parse_args(["--quick", "--steps", "7"]).steps == 7  # explicit flags win


ROOM = "benchmarks/heuristic_room.py"


def test_heuristic_room_scores_its_arms_on_the_protocols_steps(monkeypatch, capsys):
    from sandbox_rl.training.task_episodes import collect_episode

    argv = [ROOM, "--tasks", "user_engagement", "--seeds", "3-4", "--steps", "2", "--draws", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(ROOM, run_name="__main__")
    lines = {x["arm"]: x for x in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(lines) == {"heuristic", "best_candidate", "largest_high"}
    # the heuristic arm is the protocol's own heuristic baseline on the same worlds and steps
    want = [collect_episode("user_engagement", s, 2).baseline("heuristic") for s in (3, 4)]
    assert abs(lines["heuristic"]["mean"] - round(sum(want) / 2, 4)) < 1e-9
    for x in lines.values():
        d = x["minus_heuristic"]
        assert d["ci95"][0] - 1e-9 <= d["mean"] <= d["ci95"][1] + 1e-9
        assert abs(d["mean"] - (x["mean"] - lines["heuristic"]["mean"])) < 1e-3  # rounded means


def test_heuristic_room_refuses_worlds_that_are_not_training_worlds(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [ROOM, "--seeds", "990-1001"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(ROOM, run_name="__main__")
    assert exit_.value.code == 2 and "training worlds below 900" in capsys.readouterr().err
