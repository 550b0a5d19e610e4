"""SuperSuit parameter sharing: the shared spaces, the action mapping, and a tiny training run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gymnasium import spaces

pytest.importorskip("supersuit")
pytest.importorskip("stable_baselines3")

from pettingzoo.test import parallel_api_test  # noqa: E402

from sandbox_rl.envs import oasis_v0  # noqa: E402
from sandbox_rl.training.shared_policy import (SharedPolicyConfig, from_unit,  # noqa: E402
                                               make_shared_env, make_vec_env, train, unit_box)

TINY = dict(users=200, episode_steps=16, timesteps=320, n_envs=2, n_steps=16, batch_size=80,
            n_epochs=2, eval_seeds=(100, 101), eval_steps=8, checkpoint_every=160,
            progress=False)


def test_multidiscrete_reads_equal_bins() -> None:
    space = spaces.MultiDiscrete([5, 3])
    xs = np.linspace(-1, 1, 3001)
    picks = np.array([from_unit(np.array([x, x]), space) for x in xs])
    assert picks[0].tolist() == [0, 0] and picks[-1].tolist() == [4, 2]
    counts = np.bincount(picks[:, 0], minlength=5)
    assert counts.min() >= 590 and counts.max() <= 610       # uniform x -> uniform choice
    assert all(space.contains(p) for p in picks[::100])


def test_box_maps_to_its_bounds_and_bad_spaces_are_refused() -> None:
    space = spaces.Box(0.0, 1.0, (4,), dtype=np.float32)
    np.testing.assert_allclose(from_unit(np.array([-1, 0, 1, 7]), space), [0, 0.5, 1, 1])
    assert unit_box(space) == spaces.Box(-1.0, 1.0, (4,), dtype=np.float32)
    with pytest.raises(ValueError, match="Discrete"):
        unit_box(spaces.Discrete(3))


def test_every_agent_shares_one_observation_and_action_space() -> None:
    env = make_shared_env(200, 5)
    raw = oasis_v0.parallel_env(num_users=200, max_cycles=5)
    obs_len = max(raw.observation_space(a).shape[0] for a in raw.possible_agents)
    act_len = max(raw.action_space(a).shape[0] for a in raw.possible_agents)
    for agent in env.possible_agents:
        assert env.observation_space(agent).shape == (obs_len + len(raw.possible_agents),)
        assert env.action_space(agent) == spaces.Box(-1.0, 1.0, (act_len,), dtype=np.float32)
    parallel_api_test(make_shared_env(200, 5), num_cycles=5)


def test_vec_env_is_seeded_by_ppo_seed() -> None:
    cfg = SharedPolicyConfig(**TINY)
    first, second = make_vec_env(cfg), make_vec_env(cfg)
    for venv in (first, second):
        venv.seed(7)
    a, b = first.reset(), second.reset()
    assert a.shape == (5 * cfg.n_envs, first.observation_space.shape[0])
    np.testing.assert_array_equal(a, b)
    first.seed(8)
    assert not np.array_equal(first.reset(), b)


def test_tiny_run_reports_every_agent(tmp_path) -> None:
    result = train(SharedPolicyConfig(out=str(tmp_path / "run"), **TINY))
    assert (result.out / "model.zip").is_file()
    assert list((result.out / "checkpoints").glob("ppo_shared_*_steps.zip"))
    assert list((result.out / "tb").rglob("events.out.tfevents.*"))
    scores = json.loads((result.out / "eval.json").read_text())["scores"]
    assert set(scores) == set(oasis_v0.parallel_env().possible_agents)
    assert all(set(row) == {"learned", "heuristic", "random"} for row in scores.values())


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        SharedPolicyConfig(n_envs=1, n_steps=4, batch_size=64)
    with pytest.raises(ValueError, match="eval_seeds"):
        SharedPolicyConfig(seed=1000)
