"""Hostile and careless input to the env: actions, constructor arguments, and the clients that
build it their own way (SB3's ``make_vec_env``, ``gymnasium.make_vec``, ``RecordVideo``)."""

from __future__ import annotations

import math

import gymnasium
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sandbox_rl  # noqa: F401  (registers SelfEvolvingOasis-v0)
from sandbox_rl.enums import TaskType
from sandbox_rl.envs import config as config_module
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.config import MAX_QUOTED, PlatformConfig, memory_estimate
from sandbox_rl.envs.render import FRAME_SHAPE

SMALL = {"num_users": 200, "candidate_pool": 128}
ENV_ID = "SelfEvolvingOasis-v0"
# Longest message an action error may have: the agent, the space and a short quote.
MAX_MESSAGE = 400

MULTI = ("content_generation", "behavior_analysis", "user_engagement")
BOX = ("network_optimization", "trend_prediction")


# ---------------------------------------------------------------------- the three ways to act
class Parallel:
    """Acts on one agent of a parallel env, the others playing valid samples."""

    def __init__(self, **kwargs):
        self.env = oasis_v0.parallel_env(max_cycles=10**6, **{**SMALL, **kwargs})
        self.env.reset(seed=0)
        for agent in self.env.possible_agents:
            self.env.action_space(agent).seed(0)

    def ready(self, agent):
        pass

    def act(self, agent, action):
        actions = {a: self.env.action_space(a).sample() for a in self.env.agents}
        self.env.step({**actions, agent: action})

    def cycles(self) -> int:
        return self.env.num_cycles


class Gym:
    """The Gymnasium env of ``agent``'s task."""

    def __init__(self, agent, **kwargs):
        self.env = gymnasium.make(ENV_ID, task=agent, max_cycles=10**6, **{**SMALL, **kwargs})
        self.env.reset(seed=0)

    def ready(self, agent):
        pass

    def act(self, agent, action):
        self.env.step(action)

    def cycles(self) -> int:
        return self.env.unwrapped.world.num_cycles


class AEC:
    """An AEC env where every agent before ``agent`` has acted validly in this cycle."""

    def __init__(self, **kwargs):
        self.env = oasis_v0.env(max_cycles=10**6, **{**SMALL, **kwargs})
        self.env.reset(seed=0)

    def ready(self, agent):
        """Valid actions for the agents before ``agent`` (a cycle may end on the way)."""
        while self.env.agent_selection != agent:
            current = self.env.agent_selection
            self.env.step(self.env.action_space(current).sample())

    def act(self, agent, action):
        self.ready(agent)
        self.env.step(action)

    def cycles(self) -> int:
        return self.env.unwrapped.num_cycles  # the parallel env inside


def _actor(mode: str, agent: str, **kwargs):
    if kwargs.get("obs_mode") == "text" and mode != "gym":
        # Only ``agent`` speaks text: the content agent's parser would load a text model.
        kwargs["text_agents"] = [agent]
    return {"parallel": lambda: Parallel(**kwargs), "gym": lambda: Gym(agent, **kwargs),
            "aec": lambda: AEC(**kwargs)}[mode]()


MODES = ("parallel", "gym", "aec")


def _assert_refused(actor, agent: str, action, space_name: str) -> None:
    actor.ready(agent)
    before = actor.cycles()
    with pytest.raises(ValueError) as info:
        actor.act(agent, action)
    message = str(info.value)
    assert repr(agent) in message and space_name in message, message
    assert len(message) <= MAX_MESSAGE, message[:200]
    assert actor.cycles() == before  # the world did not move


# ---------------------------------------------------------------------- named bad actions
BAD_MULTI = {
    "none": None, "dict": {"topic": 1}, "2**63": 2**63, "10**20 each": "HUGE",
    "floats": [1.7, 2.9], "negative float": -0.5, "float array": np.array([1.0, 0.0]),
    "strings": ["1", "0"], "string": "1 0", "complex": np.array([1 + 0j, 0j]),
    "objects": np.array([1, 0], dtype=object), "out of range": [99, 0], "negative": [-1, 0],
    "wrong shape": [[1, 0]], "ragged": [[1], [1, 2]], "too short": [1],
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("agent", MULTI)
@pytest.mark.parametrize("case", sorted(BAD_MULTI))
def test_bad_multidiscrete_action_is_a_value_error(mode: str, agent: str, case: str) -> None:
    actor = _actor(mode, agent)
    n = actor_space(agent).shape[0]
    action = BAD_MULTI[case]
    if case == "10**20 each":
        action = [10**20] * n
    elif isinstance(action, list) and case in ("floats", "strings", "out of range", "negative"):
        action = (action * n)[:n]  # right length, so only the values are wrong
    _assert_refused(actor, agent, action, "MultiDiscrete")


BAD_BOX = {
    "complex": np.full(4, 0.5 + 0.5j), "complex list": [0.5 + 1j] * 4,
    "objects": np.array([0.5] * 4, dtype=object), "strings": ["0.5"] * 4, "none": None,
    "nan": [math.nan] * 4, "inf": [math.inf] * 4, "above": [2.0] * 4, "below": [-0.1] * 4,
    "huge float64": [1e300] * 4, "wrong shape": [0.5] * 3, "dict": {"interest": 1.0},
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("agent", BOX)
@pytest.mark.parametrize("case", sorted(BAD_BOX))
def test_bad_box_action_is_a_value_error(mode: str, agent: str, case: str) -> None:
    actor = _actor(mode, agent)
    n = actor_space(agent).shape[0]
    action = BAD_BOX[case]
    if isinstance(action, (list, np.ndarray)) and case != "wrong shape":
        action = np.resize(np.asarray(action), n) if isinstance(action, np.ndarray) else (
            action * n)[:n]
    _assert_refused(actor, agent, action, "Box")


_SPACES = {a: oasis_v0.parallel_env(**SMALL).action_space(a) for a in oasis_v0.parallel_env(
    **SMALL).possible_agents}


def actor_space(agent: str) -> gymnasium.Space:
    return _SPACES[agent]


@pytest.mark.parametrize("mode", MODES)
def test_a_megabyte_of_text_is_refused_with_a_short_quote(mode: str) -> None:
    agent = "trend_prediction"
    actor = _actor(mode, agent, obs_mode="text")
    _assert_refused(actor, agent, "trend " * 200_000, "Text")
    with pytest.raises(ValueError, match="characters") as info:
        actor.act(agent, "x" * 10**6)
    assert "x" * (MAX_QUOTED + 1) not in str(info.value)


@pytest.mark.parametrize("mode", MODES)
def test_text_outside_the_charset_is_refused(mode: str) -> None:
    actor = _actor(mode, "user_engagement", obs_mode="text")
    _assert_refused(actor, "user_engagement", "segment=sports \u2603", "Text")


def test_aec_refuses_a_bad_action_at_the_step_that_receives_it() -> None:
    env = oasis_v0.env(**SMALL)
    env.reset(seed=0)
    first = env.agent_selection
    with pytest.raises(ValueError, match=first):
        env.step(None)
    assert env.agent_selection == first  # nothing was stored: the agent may act again
    env.step(env.action_space(first).sample())
    assert env.agent_selection != first


GOOD_MULTI = [lambda a: a, lambda a: a.tolist(), lambda a: tuple(a.tolist()),
              lambda a: a.astype(np.int8), lambda a: a.astype(np.int32),
              lambda a: a.astype(np.uint8)]
GOOD_BOX = [lambda a: a, lambda a: a.astype(np.float64), lambda a: a.tolist(),
            lambda a: a.astype(np.float16)]


@pytest.mark.parametrize("mode", MODES)
def test_valid_actions_in_every_container_are_played(mode: str) -> None:
    for agent in TaskType:
        agent = agent.value
        actor = _actor(mode, agent)
        space = actor_space(agent)
        space.seed(1)
        forms = GOOD_MULTI if agent in MULTI else GOOD_BOX
        for form in forms:
            before = actor.cycles()
            actor.act(agent, form(space.sample()))
            if mode != "aec":
                assert actor.cycles() == before + 1
    # A Box action of integers (0 and 1 are weights too).
    Parallel().act("network_optimization", [0, 1, 0, 1])


def test_text_agent_takes_a_structured_action_but_not_a_bad_one() -> None:
    actor = Parallel(obs_mode="text", text_agents=["user_engagement"])
    actor.act("user_engagement", np.array([3, 1]))
    _assert_refused(actor, "user_engagement", [3.5, 1], "MultiDiscrete")


# ---------------------------------------------------------------------- generated actions
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
    st.complex_numbers(), st.text(max_size=20), st.binary(max_size=8))
_ARRAYS = hnp.arrays(
    st.sampled_from([np.int8, np.int64, np.uint64, np.float16, np.float32, np.float64,
                     np.complex64, np.bool_, np.dtype("<U3")]),
    hnp.array_shapes(min_dims=0, max_dims=2, max_side=12))
_ACTIONS = st.one_of(
    _SCALARS, _ARRAYS, st.lists(_SCALARS, max_size=12),
    st.lists(st.integers(-3, 12), min_size=1, max_size=12),
    st.lists(st.floats(-0.5, 1.5), min_size=1, max_size=12),
    st.dictionaries(st.text(max_size=5), _SCALARS, max_size=3),
    st.text(max_size=3000))


def _reference_member(space: gymnasium.Space, action) -> bool:
    """What the README promises: integers in range for MultiDiscrete, finite reals in the
    bounds for Box, of the space's shape (an independent statement of the rule)."""
    if isinstance(action, (str, bytes, dict)) or action is None:
        return False
    try:
        array = np.asarray(action)
    except (ValueError, TypeError, OverflowError):
        return False
    if array.shape != space.shape:
        return False
    if isinstance(space, gymnasium.spaces.MultiDiscrete):
        # Integers (or booleans) that int64 holds whatever their value: not uint64.
        if array.dtype.kind not in "biu" or not np.can_cast(array.dtype, np.int64):
            return False
        values = [int(v) for v in array.ravel()]
        return all(0 <= v < n for v, n in zip(values, space.nvec.ravel()))
    if array.dtype.kind not in "biuf":
        return False
    with np.errstate(over="ignore", invalid="ignore"):
        values = array.astype(np.float32)
    return bool(np.all(values >= 0) and np.all(values <= 1))


def _check_generated(actor, agent: str, action, space: gymnasium.Space) -> None:
    actor.ready(agent)
    before = actor.cycles()
    try:
        actor.act(agent, action)
    except ValueError as err:
        assert repr(agent) in str(err) and len(str(err)) <= MAX_MESSAGE
        assert actor.cycles() == before
        accepted = False
    else:
        accepted = True
    assert accepted == _reference_member(space, action), (agent, action)


_FAST = settings(max_examples=100, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])
_AGENTS = st.sampled_from([t.value for t in TaskType])


@pytest.fixture(scope="module")
def actors():
    return {"parallel": Parallel(), "aec": AEC(),
            **{f"gym:{t.value}": Gym(t.value) for t in TaskType}}


@_FAST
@given(agent=_AGENTS, action=_ACTIONS)
def test_generated_actions_parallel(actors, agent, action) -> None:
    _check_generated(actors["parallel"], agent, action, actor_space(agent))


@_FAST
@given(agent=_AGENTS, action=_ACTIONS)
def test_generated_actions_gym(actors, agent, action) -> None:
    _check_generated(actors[f"gym:{agent}"], agent, action, actor_space(agent))


@_FAST
@given(agent=_AGENTS, action=_ACTIONS)
def test_generated_actions_aec(actors, agent, action) -> None:
    _check_generated(actors["aec"], agent, action, actor_space(agent))


# Text agents whose parsers need no model (the content agent's analyses its post's text).
_TEXT_AGENTS = ["behavior_analysis", "network_optimization", "trend_prediction",
                "user_engagement"]


@pytest.fixture(scope="module")
def text_actor():
    return Parallel(obs_mode="text", text_agents=_TEXT_AGENTS)


@_FAST
@given(agent=st.sampled_from(_TEXT_AGENTS),
       action=st.one_of(st.text(max_size=2100), st.text(st.characters(codec="ascii"),
                                                         min_size=2040, max_size=2060)))
def test_generated_text_actions(text_actor, agent, action) -> None:
    """A text action is played (parsed, or the no-op) iff it fits the ``Text`` space."""
    text_actor.ready(agent)
    space = text_actor.env.action_space(agent)
    expected = (space.min_length <= len(action) <= space.max_length
                and all(c in oasis_v0.TEXT_CHARSET for c in action))
    try:
        text_actor.act(agent, action)
    except ValueError as err:
        assert not expected and repr(agent) in str(err) and len(str(err)) <= MAX_MESSAGE
        assert "Text" in str(err) and str(space) in str(err)
    else:
        assert expected


# ---------------------------------------------------------------------- constructor arguments
BAD_KWARGS = [
    ("num_users", "200"), ("num_users", None), ("num_users", 200.5), ("num_users", True),
    ("num_users", 3), ("panel_size", 2.5), ("panel_size", "8"), ("panel_size", 0),
    ("panel_size", 300), ("feed_size", 3.5), ("feed_size", 0), ("homophily", math.inf),
    ("homophily", math.nan), ("homophily", -1.0), ("homophily", 10**400),
    ("recency_hours", math.inf), ("recency_hours", 0), ("candidate_pool", 10**12), ("attach_tweets", "no"), ("attach_tweets", 1),
    ("candidate_pool", 5), ("candidate_pool", 10.0), ("mean_follows", "many"),
    ("mean_follows", math.inf), ("activation", -1), ("mean_activity", 0.9),
    ("session_continue", 1.0), ("event_rate", 1.5), ("event_decay", math.nan),
    ("start_hour", 24), ("start_hour", 7.5), ("pa_batches", 0), ("recsys", "tiktok"),
    ("recsys", None), ("topic_mix", [1.0] * 3), ("topic_mix", [1e308] * 10),
    ("max_cycles", 2.5), ("max_cycles", 0), ("history", 0), ("history", "6"),
    ("obs_mode", "pixels"), ("render_mode", "rgb"), ("trace_path", 123),
    ("trace_path", ""), ("trace_overwrite", "yes"), ("text_agents", "trend_prediction"),
    ("text_agents", ["dancing"]),
]


@pytest.mark.parametrize(("name", "value"), BAD_KWARGS,
                         ids=[f"{n}={v!r:.30}" for n, v in BAD_KWARGS])
def test_bad_env_argument_is_a_value_error_naming_it(name: str, value) -> None:
    kwargs = {**SMALL, name: value}
    if name == "text_agents":
        kwargs["obs_mode"] = "text"
    with pytest.raises(ValueError, match=f"invalid {name}="):
        oasis_v0.parallel_env(**kwargs)
    if name != "text_agents":  # the Gymnasium env sets text_agents itself
        with pytest.raises(ValueError, match=f"invalid {name}="):
            gymnasium.make(ENV_ID, **kwargs)


def test_too_few_users_names_num_users_not_an_internal_field() -> None:
    with pytest.raises(ValueError, match=r"invalid num_users=10: expected an integer >= 22"):
        oasis_v0.parallel_env(num_users=10)
    oasis_v0.parallel_env(num_users=10, mean_follows=3.0)  # a sparser graph fits
    with pytest.raises(ValueError, match="invalid mean_follows=50.0"):
        oasis_v0.parallel_env(num_users=30, mean_follows=50.0)


def test_numeric_arguments_are_normalised() -> None:
    config = PlatformConfig(num_users=np.int64(300), mean_follows=np.float32(10), homophily=2)
    assert type(config.num_users) is int and config.num_users == 300
    assert type(config.mean_follows) is float and type(config.homophily) is float
    env = oasis_v0.parallel_env(num_users=np.int32(200), panel_size=np.int64(4),
                                attach_tweets=np.bool_(False))
    assert env.constructor_kwargs()["num_users"] == 200 and env.action_space(
        "behavior_analysis").shape == (4,)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"num_users": 10**9}, "num_users"),
    ({"candidate_pool": 10**9}, "candidate_pool"),
    ({"num_users": 2 * 10**6, "candidate_pool": 10**7}, "candidate_pool"),
])
def test_a_world_larger_than_memory_is_refused_naming_the_option(kwargs, name) -> None:
    with pytest.raises(ValueError, match=f"invalid {name}=.*fits in memory.*GiB"):
        oasis_v0.parallel_env(**kwargs)


def test_memory_check_uses_what_is_available(monkeypatch) -> None:
    monkeypatch.setattr(config_module, "available_memory", lambda: 2**20)
    with pytest.raises(ValueError, match=r"invalid num_users=5000: expected a world that fits in "
                                         r"memory: .* 1.0 MiB is available"):
        oasis_v0.parallel_env(num_users=5000)
    monkeypatch.setattr(config_module, "available_memory", lambda: None)  # unknown: no check
    oasis_v0.parallel_env(num_users=5000)


# Measured in a fresh interpreter, after a small world has run (the modules a step imports or
# compiles on first use are not the world's): tracemalloc traces every allocation of every
# thread. The steps are the estimate's busiest: a full-intensity campaign on the largest segment.
_MEASURE = """
import json, sys, tracemalloc
import numpy as np
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.config import memory_estimate

def busiest_steps(**kwargs):
    env = oasis_v0.parallel_env(**kwargs)
    env.reset(seed=0)
    largest = int(np.argmax(np.diff(env.platform.segment_bounds)))
    for agent in env.possible_agents:
        env.action_space(agent).seed(0)
    for _ in range(3):
        actions = {a: env.action_space(a).sample() for a in env.agents}
        actions["user_engagement"] = np.array([largest, 3])
        env.step(actions)
    return env

busiest_steps(num_users=50)
tracemalloc.start()
env = busiest_steps(**json.loads(sys.argv[1]))
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps([sum(memory_estimate(env.config).values()), peak]))
"""


def test_memory_estimate_is_close_to_measured_and_admits_the_soak_world() -> None:
    import json
    import subprocess
    import sys

    assert sum(memory_estimate(PlatformConfig(num_users=10**6)).values()) < 2 * 2**30
    for kwargs in ({"num_users": 20_000}, {"num_users": 2_000, "candidate_pool": 20_000}):
        done = subprocess.run([sys.executable, "-c", _MEASURE, json.dumps(kwargs)],
                              capture_output=True, text=True, check=True)
        estimate, peak = json.loads(done.stdout.strip().splitlines()[-1])
        assert 0.5 * peak < estimate < 2 * peak, (kwargs, estimate, peak)


# ---------------------------------------------------------------------- rgb_array and clients
def _assert_frame(frame) -> None:
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
    assert frame.shape == FRAME_SHAPE


def test_rgb_array_frames_show_the_steps() -> None:
    env = oasis_v0.parallel_env(render_mode="rgb_array", **SMALL)
    env.reset(seed=0)
    first = env.render()
    _assert_frame(first)
    frames = []
    for _ in range(3):
        env.step({a: env.action_space(a).sample() for a in env.agents})
        frames.append(env.render())
        _assert_frame(frames[-1])
    assert not np.array_equal(first, frames[-1])  # actions and activity appeared
    assert len({f.tobytes() for f in frames}) > 1


def test_rgb_array_in_text_mode_draws_parsed_and_unparsed_answers() -> None:
    env = oasis_v0.parallel_env(render_mode="rgb_array", obs_mode="text", **SMALL)
    env.reset(seed=0)
    env.step({"content_generation": np.array([2, 1]), "behavior_analysis": "lurk",
              "network_optimization": "interest=0.9 recency=0.1",
              "trend_prediction": "qwzx", "user_engagement": "segment=sports intensity=2"})
    _assert_frame(env.render())


def test_pettingzoo_render_test() -> None:
    from pettingzoo.test import render_test

    render_test(lambda render_mode=None: oasis_v0.env(render_mode=render_mode, max_cycles=4,
                                                        **SMALL))


def test_gymnasium_check_env_with_rgb_array() -> None:
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make(ENV_ID, render_mode="rgb_array", max_cycles=10, **SMALL)
    check_env(env.unwrapped)  # the render check included


def test_record_video(tmp_path) -> None:
    try:
        import moviepy  # noqa: F401
    except ImportError:
        moviepy = None
    env = gymnasium.make(ENV_ID, render_mode="rgb_array", max_cycles=6, **SMALL)
    if moviepy is None:  # RecordVideo needs moviepy; check the frames it would record
        env = gymnasium.wrappers.RenderCollection(env)
    else:
        env = gymnasium.wrappers.RecordVideo(env, str(tmp_path), episode_trigger=lambda e: True)
    env.reset(seed=0)
    truncated = False
    while not truncated:
        *_, truncated, _ = env.step(env.action_space.sample())
    if moviepy is None:
        frames = env.render()
        assert len(frames) == 7 and all(f.shape == FRAME_SHAPE for f in frames)
    env.close()
    if moviepy is not None:
        assert list(tmp_path.glob("*.mp4"))


def test_sb3_make_vec_env_as_documented() -> None:
    from stable_baselines3.common.env_util import make_vec_env

    vec_env = make_vec_env(ENV_ID, n_envs=2)  # SB3 asks for render_mode="rgb_array"
    try:
        obs = vec_env.reset()
        assert obs.shape == (2, *vec_env.observation_space.shape)
        for _ in range(3):
            obs, rewards, dones, infos = vec_env.step(
                np.stack([vec_env.action_space.sample() for _ in range(2)]))
        assert all(0.0 <= r <= 1.0 for r in rewards)
        _assert_frame(vec_env.get_images()[0])
    finally:
        vec_env.close()


@pytest.mark.parametrize("mode", [None, "sync"])  # None: sync, there is no vector entry point
def test_gymnasium_make_vec_as_documented(mode) -> None:
    envs = gymnasium.make_vec(ENV_ID, num_envs=2, vectorization_mode=mode)
    try:
        assert isinstance(envs, gymnasium.vector.SyncVectorEnv)
        obs, infos = envs.reset(seed=42)
        assert obs.shape == (2, *envs.single_observation_space.shape)
        for _ in range(3):
            obs, rewards, terminations, truncations, infos = envs.step(
                envs.action_space.sample())
        assert rewards.shape == (2,)
        # Each sub-env is gymnasium.make's: TimeLimit of the registered 200 steps, = max_cycles.
        assert [e.spec.max_episode_steps for e in envs.envs] == [200, 200]
    finally:
        envs.close()


def test_gymnasium_make_vec_truncates_at_max_cycles_and_autoresets() -> None:
    envs = gymnasium.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", max_cycles=3,
                              **SMALL)
    try:
        assert [e.spec.max_episode_steps for e in envs.envs] == [3, 3]
        envs.reset(seed=0)
        for step in range(1, 5):
            *_, terminations, truncations, _ = envs.step(envs.action_space.sample())
            assert not terminations.any()
            assert truncations.tolist() == [step == 3] * 2, step
        # Step 4 was the autoreset (next-step mode): a fresh episode is running.
        assert [e.unwrapped.world.num_cycles for e in envs.envs] == [0, 0]
    finally:
        envs.close()
