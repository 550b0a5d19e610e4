"""Env state: save / load without pickle, in-memory snapshots, and validation of bad states."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.heuristics import HeuristicPolicy, heuristic_action
from sandbox_rl.envs.platform import BEHAVIOURS
from sandbox_rl.envs.state import (ARRAYS_FILE, META_FILE, load_env_state, read_env_state,
                                   restore, save_env_state, snapshot)
from sandbox_rl.envs.topics import NUM_TOPICS, TOPIC_NAMES

SMALL = {"num_users": 200, "candidate_pool": 128}
POSTS = ("Big game tonight, who is watching the football final?",
         "New phone launch: the camera and battery look amazing.",
         "Terrible traffic again, the city council must fix the roads.",
         "Loved this pasta recipe, simple and delicious!")


def text_action(env, agent: str, step: int) -> str:
    """A completion in the task's text format that says what the heuristic would do."""
    a = heuristic_action(agent, env.vector_observation(agent))
    match agent:
        case "content_generation":
            return POSTS[step % len(POSTS)]
        case "behavior_analysis":
            panel = env.tasks[agent].panel
            return "\n".join(f"user {u}: {BEHAVIOURS[c]}" for u, c in zip(panel, a))
        case "network_optimization":
            return " ".join(f"{n}={v:.2f}" for n, v in
                            zip(("interest", "recency", "popularity", "following"), a))
        case "trend_prediction":
            return "ranking: " + " > ".join(TOPIC_NAMES[i] for i in np.argsort(-a, kind="stable"))
        case "user_engagement":
            return f"segment={TOPIC_NAMES[a[0]]} intensity={a[1]}" if a[1] else "none"
    raise ValueError(agent)


def act(env, step: int) -> dict:
    """Heuristic actions, as text for the env's text agents."""
    return {a: text_action(env, a, step) if a in env.text_agents
            else heuristic_action(a, env.vector_observation(a)) for a in env.agents}


def run(env, steps: int, start: int = 0) -> list:
    """Step with :func:`act`; every output of each step, stats included."""
    out = []
    for i in range(steps):
        if not env.agents:
            break
        obs, rew, term, trunc, info = env.step(act(env, start + i))
        obs = {a: o if isinstance(o, str) else o.tobytes() for a, o in obs.items()}
        out.append((obs, rew, term, trunc, info, env.platform.stats()))
    return out


def assert_same_state(a, b) -> None:
    meta_a, arrays_a = a.state_dict()
    meta_b, arrays_b = b.state_dict()
    assert meta_a == meta_b
    assert arrays_a.keys() == arrays_b.keys()
    for name, x in arrays_a.items():
        y = arrays_b[name]
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name


SKIP = {"rng", "_rng", "_np_random", "corpus", "_analyzer", "_trace", "_run_start", "_run_len"}


def assert_deep_equal(x, y, path: str = "env") -> None:
    """Every attribute of the two objects equal, recursively: what state_dict missed shows here."""
    assert type(x) is type(y), path
    if isinstance(x, np.ndarray):
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), path
    elif isinstance(x, dict):
        assert list(x) == list(y), path
        for k in x:
            assert_deep_equal(x[k], y[k], f"{path}[{k!r}]")
    elif isinstance(x, (list, tuple)):
        assert len(x) == len(y), path
        for i, (u, v) in enumerate(zip(x, y)):
            assert_deep_equal(u, v, f"{path}[{i}]")
    elif type(x).__module__.startswith("sandbox_rl."):
        assert vars(x).keys() == vars(y).keys(), path
        for k in vars(x):
            if k not in SKIP:
                assert_deep_equal(vars(x)[k], vars(y)[k], f"{path}.{k}")
    elif not callable(x):
        assert x == y, path


CASES = [
    pytest.param({"obs_mode": "vector"}, id="vector"),
    pytest.param({"obs_mode": "vector", "recsys": "reddit", "attach_tweets": True},
                 id="vector-reddit-tweets"),
    pytest.param({"obs_mode": "vector", "recsys": "random", "panel_size": 5, "history": 3},
                 id="vector-random"),
    pytest.param({"obs_mode": "text"}, id="text"),
    pytest.param({"obs_mode": "text", "topic_mix": (3.0,) + (1.0,) * (NUM_TOPICS - 1)},
                 id="text-topic-mix"),
    pytest.param({"obs_mode": "text", "text_agents": ["trend_prediction", "behavior_analysis"]},
                 id="text-some-agents"),
]


@pytest.mark.parametrize("kwargs", CASES)
def test_saved_state_continues_bit_for_bit_in_a_fresh_env(kwargs, tmp_path):
    kw = {**SMALL, "max_cycles": 14, **kwargs}
    live = oasis_v0.parallel_env(**kw)
    live.reset(seed=11)
    run(live, 6)
    save_env_state(live, tmp_path)
    assert (tmp_path / META_FILE).is_file() and (tmp_path / ARRAYS_FILE).is_file()
    with np.load(tmp_path / ARRAYS_FILE, allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)

    fresh = oasis_v0.parallel_env(**kw)  # never reset: the state alone defines the world
    load_env_state(fresh, tmp_path)
    assert fresh.current_observations().keys() == set(live.agents)
    assert_deep_equal(live, fresh)
    expected, got = run(live, 10, start=6), run(fresh, 10, start=6)
    assert len(expected) == len(got) == 8  # the episode ends at max_cycles in both
    assert got == expected
    assert fresh.agents == live.agents == []


def test_text_post_texts_round_trip(tmp_path):
    env = oasis_v0.parallel_env(**SMALL, obs_mode="text", max_cycles=10)
    env.reset(seed=2)
    run(env, 3)
    assert len(env.platform.posts.texts) == 3
    save_env_state(env, tmp_path)
    fresh = oasis_v0.parallel_env(**SMALL, obs_mode="text", max_cycles=10)
    load_env_state(fresh, tmp_path)
    assert fresh.platform.posts.texts == env.platform.posts.texts
    assert set(fresh.platform.posts.texts.values()) == set(POSTS[:3])


def test_meta_is_plain_json_and_arrays_are_copies():
    env = oasis_v0.parallel_env(**SMALL)
    env.reset(seed=0)
    run(env, 2)
    meta, arrays = env.state_dict()
    assert json.loads(json.dumps(meta)) == meta
    assert meta["rng"]["bit_generator"] == "PCG64" and meta["num_cycles"] == 2
    fatigue = arrays["platform.users.fatigue"]
    assert not np.shares_memory(fatigue, env.platform.users.fatigue)


def test_snapshot_restore_rewinds_the_same_env():
    env = oasis_v0.parallel_env(**SMALL, max_cycles=30)
    env.reset(seed=5)
    run(env, 4)
    snap = snapshot(env)
    assert not any(a.flags.writeable for a in snap.arrays.values())
    first = run(env, 6, start=4)
    restore(env, snap)
    assert run(env, 6, start=4) == first
    restore(env, snap)  # a snapshot can be restored again
    assert run(env, 6, start=4) == first


def test_state_dict_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="reset"):
        oasis_v0.parallel_env(**SMALL).state_dict()


def test_state_at_episode_end_loads_as_finished(tmp_path):
    env = oasis_v0.parallel_env(**SMALL, max_cycles=3)
    env.reset(seed=1)
    run(env, 3)
    save_env_state(env, tmp_path)
    fresh = oasis_v0.parallel_env(**SMALL, max_cycles=3)
    load_env_state(fresh, tmp_path)
    assert fresh.agents == [] and fresh.num_cycles == 3
    with pytest.raises(RuntimeError, match="finished episode"):
        fresh.step({})


# ---------------------------------------------------------------------- bad states
def _corrupt(meta, arrays, key, value):
    arrays = dict(arrays)
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    return meta, arrays


def _edit_meta(meta, arrays, path, value):
    meta = json.loads(json.dumps(meta))
    node = meta
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return meta, arrays


BAD = [
    ("version", lambda m, a: _edit_meta(m, a, ["version"], 99), "version"),
    ("format", lambda m, a: _edit_meta(m, a, ["format"], "pickle"), "format"),
    ("config", lambda m, a: _edit_meta(m, a, ["env", "num_users"], 300), "num_users=300"),
    ("obs-mode", lambda m, a: _edit_meta(m, a, ["env", "obs_mode"], "text"), "obs_mode"),
    ("meta-key", lambda m, a: ({k: v for k, v in m.items() if k != "rng"}, a), "rng"),
    ("rng", lambda m, a: _edit_meta(m, a, ["rng", "bit_generator"], "MT19937"), "rng"),
    ("cycles", lambda m, a: _edit_meta(m, a, ["num_cycles"], 50), "num_cycles"),
    ("agents", lambda m, a: _edit_meta(m, a, ["agents"], ["content_generation"]), "agents"),
    ("totals", lambda m, a: _edit_meta(m, a, ["platform", "totals", "likes"], -1), "likes"),
    ("task-scalar", lambda m, a: _edit_meta(m, a, ["tasks", "content_generation", "last_reward"],
                                            "high"), "last_reward"),
    ("missing-array", lambda m, a: _corrupt(m, a, "platform.users.fatigue", None), "fatigue"),
    ("extra-array", lambda m, a: _corrupt(m, a, "platform.extra", np.zeros(3)), "extra"),
    ("extra-prefix", lambda m, a: _corrupt(m, a, "model.weights", np.zeros(3)), "model"),
    ("dtype", lambda m, a: _corrupt(m, a, "platform.users.fatigue",
                                    a["platform.users.fatigue"].astype(np.float64)), "fatigue"),
    ("shape", lambda m, a: _corrupt(m, a, "platform.users.interests",
                                    a["platform.users.interests"][:-1]), "interests"),
    ("range", lambda m, a: _corrupt(m, a, "tasks.behavior_analysis.panel",
                                    np.full(8, 10_000, dtype=np.int64)), "panel"),
    ("graph", lambda m, a: _corrupt(m, a, "platform.graph.keys",
                                    a["platform.graph.keys"][::-1].copy()), "graph.keys"),
    ("posts", lambda m, a: _corrupt(m, a, "platform.posts.author",
                                    a["platform.posts.author"][:-2]), "posts.author"),
    ("obs", lambda m, a: _corrupt(m, a, "obs.trend_prediction", np.zeros(3, np.float32)),
     "obs.trend_prediction"),
]


@pytest.mark.parametrize("name, corrupt, match", BAD, ids=[b[0] for b in BAD])
def test_bad_state_is_a_clear_error_and_leaves_the_env_unchanged(name, corrupt, match):
    source = oasis_v0.parallel_env(**SMALL)
    source.reset(seed=3)
    run(source, 3)
    meta, arrays = corrupt(*source.state_dict())

    env = oasis_v0.parallel_env(**SMALL)
    env.reset(seed=4)
    run(env, 2)
    twin = oasis_v0.parallel_env(**SMALL)
    twin.load_state_dict(*env.state_dict())
    with pytest.raises(ValueError, match=match):
        env.load_state_dict(meta, arrays)
    assert_same_state(env, twin)
    assert run(env, 3, start=2) == run(twin, 3, start=2)


def test_fresh_env_stays_unset_after_a_bad_load():
    source = oasis_v0.parallel_env(**SMALL)
    source.reset(seed=3)
    meta, arrays = source.state_dict()
    fresh = oasis_v0.parallel_env(**SMALL)
    with pytest.raises(ValueError, match="version"):
        fresh.load_state_dict({**meta, "version": 0}, arrays)
    assert fresh.platform is None and fresh._np_random is None and fresh.agents == []


def test_missing_and_corrupt_files_are_value_errors(tmp_path):
    env = oasis_v0.parallel_env(**SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="missing"):
        load_env_state(env, tmp_path / "nowhere")
    save_env_state(env, tmp_path)
    before = env.state_dict()

    (tmp_path / META_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="corrupt.*json"):
        load_env_state(env, tmp_path)

    save_env_state(env, tmp_path)
    data = (tmp_path / ARRAYS_FILE).read_bytes()
    (tmp_path / ARRAYS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt.*npz"):
        load_env_state(env, tmp_path)

    # An object array would need pickle to load: refused, never unpickled.
    meta, arrays = read_env_state(_saved(env, tmp_path / "ok"))
    arrays["platform.posts.text_values"] = np.array([{"x": 1}], dtype=object)
    with zipfile.ZipFile(tmp_path / "ok" / ARRAYS_FILE, "w") as z:
        for k, v in arrays.items():
            with z.open(k + ".npy", "w") as f:
                np.lib.format.write_array(f, v, allow_pickle=True)
    with pytest.raises(ValueError, match="corrupt.*npz"):
        load_env_state(env, tmp_path / "ok")
    after = env.state_dict()
    assert before[0] == after[0]
    assert all(before[1][k].tobytes() == after[1][k].tobytes() for k in before[1])


def _saved(env, folder):
    save_env_state(env, folder)
    return folder


def test_load_into_env_with_other_config_names_the_difference(tmp_path):
    env = oasis_v0.parallel_env(**SMALL, recsys="reddit")
    env.reset(seed=0)
    save_env_state(env, tmp_path)
    other = oasis_v0.parallel_env(**SMALL)
    with pytest.raises(ValueError, match="recsys='reddit'"):
        load_env_state(other, tmp_path)


def test_loaded_env_keeps_its_generator_object_for_wrappers():
    env = oasis_v0.parallel_env(**SMALL)
    env.reset(seed=0)
    rng = env._np_random
    source = oasis_v0.parallel_env(**SMALL)
    source.reset(seed=9)
    env.load_state_dict(*source.state_dict())
    assert env._np_random is rng and env.platform.rng is rng
    assert env.tasks["behavior_analysis"]._rng is rng


def test_policy_driven_env_and_heuristic_policy_after_load():
    # HeuristicPolicy reads env.vector_observation, which a load restores.
    env = oasis_v0.parallel_env(**SMALL)
    obs, _ = env.reset(seed=0)
    fresh = oasis_v0.parallel_env(**SMALL)
    fresh.load_state_dict(*env.state_dict())
    a, b = HeuristicPolicy(env)(obs), HeuristicPolicy(fresh)(fresh.current_observations())
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_load_closes_an_open_trace_and_stepping_goes_on(tmp_path):
    env = oasis_v0.parallel_env(**SMALL, trace_path=str(tmp_path / "trace.db"))
    env.reset(seed=0)
    assert env._trace is not None
    source = oasis_v0.parallel_env(**SMALL)
    source.reset(seed=1)
    run(source, 2)
    env.load_state_dict(*source.state_dict())
    assert env._trace is None  # its rows describe the world that was replaced
    assert run(env, 2, start=2) == run(source, 2, start=2)
