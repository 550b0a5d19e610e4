"""Expert iteration's proposals on Ray actors: shares aligned to the greedy batches (no Ray
needed) and, on the two-node test cluster, the same proposals and scores as one process for
any worker count; ``train agents --ray-address`` end to end."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import load_model
from sandbox_rl.training import expert_iteration as ei
from sandbox_rl.training.expert_iteration_ray import shares

TASK = "trend_prediction"


@pytest.mark.parametrize(("count", "workers", "expected"), [
    (24, 2, [(0, 16), (16, 24)]),
    (24, 3, [(0, 8), (8, 16), (16, 24)]),
    (20, 2, [(0, 16), (16, 20)]),
    (5, 4, [(0, 5)]),                    # one batch: one share
    (17, 2, [(0, 16), (16, 17)]),
])
def test_shares_start_at_greedy_batches(count, workers, expected) -> None:
    got = shares(count, workers)
    assert [(r.start, r.stop) for r in got] == expected
    assert all(r.start % ei.GREEDY_BATCH == 0 for r in got)


def test_shares_need_a_worker() -> None:
    with pytest.raises(ValueError, match="workers"):
        shares(8, 0)


def _as_tuples(p: ei.Proposed) -> tuple:
    return ([(e.prompt, e.completion, e.reward, e.greedy_reward, e.source) for e in p.examples],
            p.greedy_scores, p.best_scores, p.candidates)


@pytest.mark.cluster
def test_actors_propose_as_one_process(ray_cluster) -> None:
    from sandbox_rl.training.expert_iteration_ray import RayProposer, Worlds
    from sandbox_rl.training.ray_runtime import ray_session
    from sandbox_rl.training.task_episodes import collect_episode

    torch.set_num_threads(1)
    episodes = [collect_episode(TASK, seed, 5, 200) for seed in (0, 1)]
    states = ei.states_of(episodes)[:10]  # two greedy batches: 8 + 2
    adapters = TaskAdapters(load_model("tiny-llama"), [TASK], LoraSettings(), seed=0)
    with torch.no_grad():  # away from PEFT's zero start: the weights that travel matter
        generator = torch.Generator().manual_seed(1)
        for p in adapters.parameters(TASK):
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    settings = ei.RoundSettings(samples=2, draws=2, seed=3)
    serial = ei.propose(adapters, TASK, states, settings, round_index=1)
    assert serial.candidates >= len(states) and len(serial.greedy_scores) == len(states)
    with ray_session(ray_cluster.address, threads=1):
        for workers in (1, 2):
            proposer = RayProposer(workers, "tiny-llama", [TASK], 8, 0, threads=1,
                                   worlds=Worlds(steps=5, users=200))
            assert _as_tuples(proposer(adapters, TASK, states, settings, 1)) == \
                _as_tuples(serial), workers


@pytest.mark.cluster
def test_train_agents_on_the_cluster(ray_cluster, tmp_path) -> None:
    from sandbox_rl.cli import main

    out = tmp_path / "run"
    assert main(["train", "agents", "--model", "tiny-llama", "--tasks", TASK, "--minutes",
                 "0.05", "--users", "200", "--world-steps", "2", "--validation-seeds", "900",
                 "--eval-seeds", "1000", "--eval-steps", "2", "--threads", "1", "--quiet",
                 "--states-per-round", "4", "--samples", "1", "--ray-address",
                 ray_cluster.address, "--workers", "2", "--worker-threads", "1",
                 "--out", str(out)]) == 0
    log = json.loads((out / "training.json").read_text())
    rounds = log["tasks"][TASK]["rounds"]
    assert rounds and rounds[0]["states"] > 0 and rounds[0]["candidates"] >= rounds[0]["states"]
    assert (out / "adapters" / TASK / "adapter_config.json").is_file()
    for label in ("trained", "untrained"):  # played by the run's Ray actors
        lines = [json.loads(x) for x in (out / f"eval_{label}.jsonl").read_text().splitlines()]
        assert {x["arm"] for x in lines} == {"agents", "heuristic", "random"}


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="ray is installed")
def test_train_agents_ray_address_without_ray_names_the_extra(tmp_path, capsys) -> None:
    from sandbox_rl.cli import main

    out = tmp_path / "run"
    assert main(["train", "agents", "--model", "tiny-llama", "--tasks", TASK, "--minutes",
                 "0.01", "--quiet", "--ray-address", "local", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert ".[rllib]" in err and "Traceback" not in err
    assert not out.exists()  # checked before anything is written


@pytest.mark.parametrize(("argv", "flag"), [
    (["--workers", "2"], "--workers"),                                   # no --ray-address
    (["--ray-address", "local", "--workers", "0"], "--workers"),
    (["--ray-address", " "], "--ray-address"),
    (["--ray-address", "nohost:99999"], "--ray-address"),
    (["--worker-threads", "1"], "--worker-threads"),                     # no --ray-address
    (["--ray-address", "local", "--worker-threads", "0"], "--worker-threads"),
])
def test_train_agents_ray_flags_are_checked(argv, flag, tmp_path, capsys) -> None:
    from sandbox_rl.cli import main

    assert main(["train", "agents", "--model", "tiny-llama", "--out", str(tmp_path / "r"),
                 *argv]) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}:" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
