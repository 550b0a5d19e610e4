"""RLlib entry point: config checks (no ray needed) and a tiny run (skipped without ray)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from sandbox_rl.training.common import ExtraMissingError
from sandbox_rl.training.rllib import RLlibConfig, train

HAVE_RAY = importlib.util.find_spec("ray") is not None


@pytest.mark.parametrize(("changes", "name"), [
    ({"num_env_runners": -1}, "num_env_runners"),
    ({"minibatch_size": 5000}, "minibatch_size"),
    ({"address": " "}, "address"),
    ({"num_cpus": 0}, "num_cpus"),
    ({"address": "auto", "num_cpus": 2}, "num_cpus"),  # a cluster's nodes declare their CPUs
    ({"num_learners": -1}, "num_learners"),
    ({"num_gpus_per_learner": -0.5}, "num_gpus_per_learner"),
    ({"threads": 0}, "threads"),
    ({"eval_seeds": (1, 1000)}, "eval_seeds"),    # env runner 1 samples world seed + 1
])
def test_bad_config_names_the_field(changes: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        RLlibConfig(**changes)


@pytest.mark.skipif(HAVE_RAY, reason="ray is installed")
def test_missing_ray_says_which_extra(tmp_path) -> None:
    with pytest.raises(ExtraMissingError, match=r"\.\[rllib\]"):
        train(RLlibConfig(out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


def test_tiny_run_checkpoints_and_reports_every_agent(tmp_path) -> None:
    pytest.importorskip("ray.rllib")
    cfg = RLlibConfig(users=200, episode_steps=20, timesteps=100, num_env_runners=0,
                      train_batch_size=50, minibatch_size=25, num_epochs=1, num_cpus=1,
                      eval_seeds=(100, 101), eval_steps=8, checkpoint_every=50,
                      progress=False, out=str(tmp_path / "run"))
    result = train(cfg)
    assert result.timesteps >= 100 and result.iterations >= 2
    assert (result.out / "checkpoint").is_dir()
    assert list((result.out / "checkpoints").iterdir())
    assert list((result.out / "tb").glob("events.out.tfevents.*"))
    scores = json.loads((result.out / "eval.json").read_text())["scores"]
    assert len(scores) == 5
    assert all(set(row) == {"learned", "heuristic", "random"} for row in scores.values())


def test_env_created_as_rllibs_pettingzoo_docs_show() -> None:
    """RLlib's PettingZoo example, word for word: ``register_env`` with a creator that wraps
    the ParallelEnv in ``ParallelPettingZooEnv``; then the env RLlib would build from it."""
    pytest.importorskip("ray.rllib")
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
    from ray.tune.registry import _global_registry, ENV_CREATOR, register_env

    from sandbox_rl.envs import oasis_v0

    register_env("oasis", lambda config: ParallelPettingZooEnv(oasis_v0.parallel_env(**config)))
    env = _global_registry.get(ENV_CREATOR, "oasis")({"num_users": 200})
    obs, infos = env.reset(seed=0)
    assert set(obs) == set(env.get_agent_ids()) and len(obs) == 5
    for agent, value in obs.items():
        assert env.observation_space[agent].contains(value)
    for _ in range(3):
        actions = {a: env.action_space[a].sample() for a in obs}
        obs, rewards, terminated, truncated, infos = env.step(actions)
        assert set(rewards) == set(actions) and "__all__" in terminated
        assert all(env.observation_space[a].contains(v) for a, v in obs.items())
    env.close()
