"""Conformance of the PettingZoo and Gymnasium envs, with the ecosystem's own checkers."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from pettingzoo.test import (api_test, max_cycles_test, parallel_api_test, parallel_seed_test,
                             state_test)

import sandbox_rl  # noqa: F401  (registers SelfEvolvingOasis-v0)
from sandbox_rl.enums import TaskType
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.registration import DEFAULT_MAX_CYCLES, ENV_ID
from sandbox_rl.envs.topics import TOPIC_NAMES
from sandbox_rl.envs.heuristics import HeuristicPolicy

TASKS = [t.value for t in TaskType]
SMALL = {"num_users": 200, "candidate_pool": 128}


@pytest.mark.parametrize("recsys", ["twitter", "reddit", "random"])
@pytest.mark.parametrize("obs_mode", ["vector", "text"])
def test_parallel_api(recsys, obs_mode):
    env = oasis_v0.parallel_env(recsys=recsys, obs_mode=obs_mode, max_cycles=30, **SMALL)
    parallel_api_test(env, num_cycles=30)


def test_aec_api():
    # PettingZoo's api_test reads observations' dtype, so it only takes array observations;
    # the text mode is covered by parallel_api_test.
    api_test(oasis_v0.env(max_cycles=20, **SMALL), num_cycles=20)


@pytest.mark.parametrize("obs_mode", ["vector", "text"])
def test_state_lies_in_state_space(obs_mode):
    env = oasis_v0.parallel_env(obs_mode=obs_mode, max_cycles=6, **SMALL)
    space = env.state_space
    assert isinstance(space, gymnasium.spaces.Box) and space.dtype == np.float32
    assert space.shape == (sum(env.tasks[a].observation_space.shape[0]
                                for a in env.possible_agents),)
    env.reset(seed=0)
    for agent in env.possible_agents:
        env.action_space(agent).seed(0)
    assert space.contains(env.state())
    while env.agents:
        env.step({a: env.action_space(a).sample() for a in env.agents})
        assert space.contains(env.state())
    vectors = [env.vector_observation(a) for a in env.possible_agents]
    np.testing.assert_array_equal(env.state(), np.concatenate(vectors))


def test_pettingzoo_state_test():
    # The AEC env (parallel_to_aec) exposes the parallel env's state_space and state().
    aec = oasis_v0.env(max_cycles=10, **SMALL)
    assert aec.state_space is aec.unwrapped.state_space
    state_test(aec, oasis_v0.parallel_env(**SMALL))


def test_follower_graph_is_the_platform_graph():
    env = oasis_v0.parallel_env(max_cycles=20, **SMALL)
    with pytest.raises(RuntimeError, match="reset"):
        env.follower_graph()
    env.reset(seed=0)
    for agent in env.possible_agents:
        env.action_space(agent).seed(0)
    for _ in range(12):  # some follows and unfollows, still pending in the graph
        env.step({a: env.action_space(a).sample() for a in env.agents})
    pending = env.platform.graph.state_dict()
    assert pending["add"].size and pending["del"].size
    graph = env.follower_graph()
    assert graph.number_of_nodes() == SMALL["num_users"]
    adj = env.platform.graph.adjacency()
    assert graph.number_of_edges() == adj.nnz == env.platform.stats().total_edges
    src, dst = adj.nonzero()
    assert set(graph.edges) == set(zip(src.tolist(), dst.tolist()))  # u -> v: u follows v


@pytest.mark.parametrize("recsys", ["twitter", "reddit", "random"])
def test_parallel_seed(recsys):
    parallel_seed_test(lambda: oasis_v0.parallel_env(recsys=recsys, **SMALL), num_cycles=40)


def test_max_cycles():
    max_cycles_test(oasis_v0)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("obs_mode", ["vector", "text"])
def test_gymnasium_check_env(task, obs_mode):
    # The render check included: the rgb_array frame, then a fresh env in each render mode.
    env = gymnasium.make("SelfEvolvingOasis-v0", task=task, obs_mode=obs_mode, max_cycles=20,
                         render_mode="rgb_array", **SMALL)
    gym_check_env(env.unwrapped)


@pytest.mark.parametrize("task", TASKS)
def test_sb3_check_env(task):
    from stable_baselines3.common.env_checker import check_env

    env = gymnasium.make("SelfEvolvingOasis-v0", task=task, max_cycles=20, **SMALL)
    check_env(env.unwrapped, warn=False)


def test_default_gymnasium_env_runs_to_truncation():
    env = gymnasium.make("SelfEvolvingOasis-v0", max_cycles=5)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    for i in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert 0.0 <= reward <= 1.0 and not terminated
    assert truncated


def _episode_length(env) -> int:
    """Steps from reset to the first truncation (the env never terminates)."""
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        assert not terminated
    return steps


def test_registered_max_episode_steps_is_the_default_max_cycles():
    spec = gymnasium.spec(ENV_ID)
    assert spec.max_episode_steps == DEFAULT_MAX_CYCLES == 200
    assert oasis_v0.parallel_env(**SMALL).max_cycles == DEFAULT_MAX_CYCLES
    env = gymnasium.make(ENV_ID, **SMALL)
    assert env.spec.max_episode_steps == env.unwrapped.world.max_cycles == 200
    assert isinstance(env, gymnasium.wrappers.TimeLimit)


@pytest.mark.parametrize("kwargs, length", [
    ({"max_cycles": 5}, 5),
    ({"max_cycles": 203}, 203),  # longer than the registered 200: the TimeLimit follows
    ({"max_cycles": 5, "max_episode_steps": 3}, 3),  # an explicit TimeLimit is kept
    ({"max_cycles": 5, "max_episode_steps": -1}, 5),  # no TimeLimit: the env's own truncation
])
def test_time_limit_agrees_with_max_cycles(kwargs, length):
    env = gymnasium.make(ENV_ID, **SMALL, **kwargs)
    if kwargs.get("max_episode_steps") != -1:
        assert env.spec.max_episode_steps == length
        assert isinstance(env, gymnasium.wrappers.TimeLimit)
        assert not isinstance(env.env, gymnasium.wrappers.TimeLimit)  # one TimeLimit only
    assert _episode_length(env) == length
    if kwargs.get("max_episode_steps") is None:  # both limits at once
        assert not env.unwrapped.world.agents
    again = gymnasium.make(env.spec)  # the spec rebuilds the same limit
    assert again.spec.max_episode_steps == env.spec.max_episode_steps


def _rollout(seed: int, steps: int, **kwargs):
    env = oasis_v0.parallel_env(max_cycles=steps, **{**SMALL, **kwargs})
    obs, _ = env.reset(seed=seed)
    policy = HeuristicPolicy(env)
    trajectory = []
    while env.agents:
        obs, rewards, *_ = env.step(policy(obs))
        trajectory.append((obs, rewards))
    return trajectory, env


def test_same_seed_same_actions_same_trajectory_bit_for_bit():
    a, env_a = _rollout(7, 25)
    b, env_b = _rollout(7, 25)
    for (obs_a, rew_a), (obs_b, rew_b) in zip(a, b):
        assert rew_a == rew_b
        for agent in obs_a:
            assert obs_a[agent].tobytes() == obs_b[agent].tobytes()
    assert env_a.platform.stats() == env_b.platform.stats()
    c, _ = _rollout(8, 25)
    assert any(x[1] != y[1] for x, y in zip(a, c)), "a different seed should change the world"


@pytest.mark.parametrize("recsys", ["twitter", "reddit", "random"])
def test_rewards_in_unit_interval_under_random_actions(recsys):
    env = oasis_v0.parallel_env(recsys=recsys, max_cycles=40, **SMALL)
    env.reset(seed=1)
    for agent in env.possible_agents:
        env.action_space(agent).seed(1)
    seen = {a: [] for a in env.possible_agents}
    while env.agents:
        _, rewards, *_ = env.step({a: env.action_space(a).sample() for a in env.agents})
        for a, r in rewards.items():
            assert isinstance(r, float) and 0.0 <= r <= 1.0
            seen[a].append(r)
    if recsys == "twitter":  # elsewhere a small world rarely shows the brand's post at all
        assert all(np.ptp(v) > 0 for v in seen.values()), "every reward should vary"


def test_invalid_config_names_the_field():
    with pytest.raises(ValueError, match="recsys"):
        oasis_v0.parallel_env(recsys="tiktok")
    with pytest.raises(ValueError, match="num_users"):
        oasis_v0.parallel_env(num_users=3)
    with pytest.raises(ValueError, match="obs_mode"):
        oasis_v0.parallel_env(obs_mode="pixels")
    with pytest.raises(ValueError, match="max_cycles"):
        oasis_v0.parallel_env(max_cycles=0)
    with pytest.raises(ValueError, match="colour"):
        oasis_v0.parallel_env(colour="blue")
    with pytest.raises(ValueError, match="task"):
        gymnasium.make("SelfEvolvingOasis-v0", task="dancing")


def test_action_outside_space_is_a_clear_error():
    env = oasis_v0.parallel_env(**SMALL)
    env.reset(seed=0)
    actions = {a: env.action_space(a).sample() for a in env.agents}
    actions["content_generation"] = np.array([99, 0])
    with pytest.raises(ValueError, match="content_generation.*outside its action space"):
        env.step(actions)
    actions["content_generation"] = env.action_space("content_generation").sample()
    actions["network_optimization"] = np.array([2.0, 0, 0, 0], dtype=np.float32)
    with pytest.raises(ValueError, match="network_optimization"):
        env.step(actions)


def test_garbage_text_is_a_noop_with_reason():
    env = oasis_v0.parallel_env(obs_mode="text", **SMALL)
    obs, _ = env.reset(seed=0)
    assert all(isinstance(o, str) and env.observation_space(a).contains(o) for a, o in obs.items())
    garbage = {a: "qwzx 123 !!" for a in env.agents}
    garbage["content_generation"] = "   "
    _, rewards, _, _, infos = env.step(garbage)
    for agent in env.possible_agents:
        assert infos[agent]["parse_error"], agent
    assert rewards["behavior_analysis"] == 0.0
    assert rewards["trend_prediction"] == 0.0
    assert rewards["content_generation"] == 0.0
    assert rewards["user_engagement"] == 0.5
    assert env.platform.last.agent_post == -1
    assert env.platform.last.campaign.targeted == 0


def test_text_agents_also_take_structured_actions():
    text = oasis_v0.parallel_env(obs_mode="text", **SMALL)
    vector = oasis_v0.parallel_env(**SMALL)
    text.reset(seed=3)
    obs, _ = vector.reset(seed=3)
    actions = HeuristicPolicy(vector)(obs)
    _, expected, *_ = vector.step(actions)
    _, got, _, _, infos = text.step(actions)  # structured actions for every text agent
    assert got == expected and not any("parse_error" in i for i in infos.values())
    text.reset(seed=3)
    with pytest.raises(ValueError, match="trend_prediction"):
        text.step({**actions, "trend_prediction": np.full(99, 0.5, dtype=np.float32)})


def test_text_actions_parse_into_structured_actions():
    env = oasis_v0.parallel_env(obs_mode="text", **SMALL)
    env.reset(seed=0)
    panel = env.tasks["behavior_analysis"].panel
    actions = {
        "content_generation": "Huge win for our team tonight, what a football match!",
        "behavior_analysis": "\n".join("lurk" for _ in panel),
        "network_optimization": "interest=0.9 recency=0.2 popularity=0.1 following=0.4",
        "trend_prediction": "ranking: " + " > ".join(reversed(TOPIC_NAMES)),
        "user_engagement": "segment=technology intensity=2",
    }
    _, rewards, _, _, infos = env.step(actions)
    assert not any("parse_error" in infos[a] for a in actions)
    last = env.platform.last
    assert last.agent_post >= 0
    assert env.platform.posts.column("main_topic")[last.agent_post] == 2  # sports
    assert env.platform.posts.texts[last.agent_post].startswith("Huge win")
    np.testing.assert_allclose(env.platform.weights, [0.9, 0.2, 0.1, 0.4])
    assert last.campaign.targeted > 0
    assert 0.0 <= rewards["behavior_analysis"] <= 1.0
