"""SB3 PPO entry point: config checks, the action mapping, and a tiny training run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sandbox_rl.training.sb3 import SB3Config, make_env, to_env_action, train

pytest.importorskip("stable_baselines3")

TINY = dict(users=200, episode_steps=16, timesteps=128, n_envs=2, n_steps=32, batch_size=32,
            n_epochs=2, eval_seeds=(100, 101), eval_steps=8, checkpoint_every=64,
            progress=False)


@pytest.mark.parametrize(("changes", "name"), [
    ({"task": "dancing"}, "task"),
    ({"timesteps": 0}, "timesteps"),
    ({"batch_size": 2048}, "batch_size"),
    ({"vec_env": "threads"}, "vec_env"),
    ({"eval_seeds": (1, 1000)}, "eval_seeds"),     # world 1 is a training world
    ({"eval_seeds": ()}, "eval_seeds"),
    ({"gamma": 1.5}, "gamma"),
])
def test_bad_config_names_the_field(changes: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SB3Config(**changes)


def test_box_actions_map_like_rescale_action() -> None:
    wrapped = make_env("network_optimization", 200, 4)
    raw = make_env("network_optimization", 200, 4, normalise=False)
    rng = np.random.default_rng(0)
    for action in rng.uniform(-1, 1, size=(5, 4)).astype(np.float32):
        expected = wrapped.action(action)
        np.testing.assert_allclose(to_env_action(raw.action_space, action), expected, atol=1e-6)
    assert raw.action_space.contains(to_env_action(raw.action_space, np.full(4, 3.0)))


@pytest.mark.parametrize("task", ["user_engagement", "trend_prediction"])
def test_tiny_run_saves_everything_and_reports_three_policies(task: str, tmp_path) -> None:
    result = train(SB3Config(task=task, out=str(tmp_path / "run"), **TINY))
    out = result.out
    assert (out / "model.zip").is_file() and (out / "config.json").is_file()
    assert list((out / "checkpoints").glob("ppo_*_steps.zip"))
    assert list((out / "tb").rglob("events.out.tfevents.*"))
    scores = json.loads((out / "eval.json").read_text())["scores"][task]
    assert set(scores) == {"learned", "heuristic", "random"}
    for score in scores.values():
        assert len(score["per_seed"]) == 2 and all(0 <= r <= 1 for r in score["per_seed"])
    assert result.timesteps >= 128


def test_same_seed_same_result_and_finished_run_is_kept(tmp_path) -> None:
    cfg = dict(task="network_optimization", **TINY)
    first = train(SB3Config(out=str(tmp_path / "a"), **cfg)).report.as_dict()
    second = train(SB3Config(out=str(tmp_path / "b"), **cfg)).report.as_dict()
    assert first["scores"] == second["scores"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        train(SB3Config(out=str(tmp_path / "a"), **cfg))
