"""Shipping the package to Ray workers: the staged tree (no Ray needed) and, on the two-node
test cluster, workers on both nodes importing the shipped copy; Ray tasks score worlds exactly
as the serial loop does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from functools import partial
from pathlib import Path

import pytest

from sandbox_rl.training.ray_runtime import (PACKAGES, SHIPPED_CACHE, THREAD_VARS, check_address,
                                             ray_map, ray_session, runtime_env, stage_package)

ROOT = Path(__file__).resolve().parents[2]


def test_packages_are_the_distributions() -> None:
    from sandbox_rl.envs import corpus
    from sandbox_rl.training import ray_runtime

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert list(PACKAGES) == project["tool"]["setuptools"]["packages"]
    assert ray_runtime.CORPUS_FILE == corpus.CORPUS_FILE


def test_staged_tree_imports_alone(tmp_path) -> None:
    """The staged folder alone provides the package and the corpus: a fresh interpreter with
    it first on the path imports the env from there and builds a world."""
    staged = stage_package(tmp_path)
    env = runtime_env(staged, threads=1)
    assert env["working_dir"] == str(staged)
    assert all(env["env_vars"][var] == "1" for var in THREAD_VARS)
    code = ("import sandbox_rl, sandbox_rl.envs.oasis_v0 as o; "
            "e = o.parallel_env(num_users=50); e.reset(seed=0); "
            "print(sandbox_rl.__file__); print(o.__file__)")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=staged, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(staged), **env["env_vars"]})
    files = done.stdout.split()[-2:]
    assert all(Path(f).resolve().is_relative_to(staged.resolve()) for f in files), files
    assert (staged / SHIPPED_CACHE / "tweets.npz").is_file()


def test_missing_corpus_is_named(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SANDBOX_RL_CACHE", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="make setup"):
        stage_package(tmp_path / "stage")


def test_bad_address_and_threads_are_named() -> None:
    with pytest.raises(ValueError, match="address"):
        with ray_session(" ", threads=1):
            pass
    with pytest.raises(ValueError, match="threads"):
        with ray_session(None, threads=0):
            pass


@pytest.mark.parametrize("address", ["10.0.0.1", "host:port", ":6379", "h:70000"])
def test_malformed_address_is_named(address) -> None:
    with pytest.raises(ValueError, match="ray_address"):
        check_address(address, "ray_address")


def test_address_nobody_answers_at_fails_at_once() -> None:
    """``ray.init`` would retry it for minutes."""
    with socket.socket() as s:  # a port bound but not listening: connections are refused
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(ValueError, match="nothing answers there"):
            check_address(address)
    check_address(None)
    check_address("auto")  # ray.init resolves and checks it itself


@pytest.mark.cluster
def test_workers_on_both_nodes_import_the_shipped_package(ray_cluster) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def where(_item) -> dict:  # defined here: Ray pickles it by value, not as a test module's
        import sandbox_rl

        return {"node": ray.get_runtime_context().get_node_id(),
                "package": sandbox_rl.__file__, "cache": os.environ.get("SANDBOX_RL_CACHE"),
                "threads": os.environ["OMP_NUM_THREADS"], "cwd": os.getcwd()}

    with ray_session(ray_cluster.address, threads=1):
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
        seen = ray.get([ray.remote(where).options(
            num_cpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        ).remote(node) for node in nodes])
    assert len(nodes) == 2
    assert {s["node"] for s in seen} == nodes
    for s in seen:
        assert not Path(s["package"]).resolve().is_relative_to(ROOT), s  # not this checkout
        assert Path(s["package"]).resolve().is_relative_to(Path(s["cwd"]).resolve()), s
        assert s["cache"] == SHIPPED_CACHE and s["threads"] == "1"


@pytest.mark.cluster
def test_ray_tasks_score_worlds_as_the_serial_loop(ray_cluster) -> None:
    from sandbox_rl.envs import oasis_v0
    from sandbox_rl.training.evaluation import evaluate_parallel

    raw = partial(oasis_v0.parallel_env, num_users=100, max_cycles=4)
    players = {"heuristic": (raw, "heuristic"), "random": (raw, "random")}
    serial = evaluate_parallel(players, (1000, 1001, 1002), 4, title="t")
    with ray_session(ray_cluster.address, threads=1):
        on_ray = evaluate_parallel(players, (1000, 1001, 1002), 4, title="t",
                                   map_worlds=ray_map)
    assert on_ray.as_dict() == serial.as_dict()
