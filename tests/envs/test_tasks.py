"""The five tasks' text formats (render / parse) and the trend reward."""

from __future__ import annotations

import re
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox_rl.enums import TaskType
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.heuristics import HeuristicPolicy, heuristic_action
from sandbox_rl.envs.platform import BEHAVIOURS
from sandbox_rl.envs.tasks import (BehaviorAnalysis, ContentGeneration, NetworkOptimization,
                                   Parsed, Task, TrendPrediction, UserEngagement, make_tasks,
                                   spearman_reward)
from sandbox_rl.envs.topics import NUM_TOPICS, TOPIC_NAMES

TASKS = [t.value for t in TaskType]
SMALL = {"num_users": 200, "candidate_pool": 128}


def _tasks() -> dict[str, Task]:
    """Task objects as the env builds them, but with no text analyser (no model loads)."""
    tasks = make_tasks(panel_size=8, history=6, analyzer=None)
    tasks[TaskType.BEHAVIOR_ANALYSIS.value].panel = np.array([3, 12, 40, 41, 77, 100, 150, 199])
    return tasks


TASK_OBJECTS = _tasks()


def _assert_in_space(task: Task, parsed: Parsed) -> None:
    assert isinstance(parsed, Parsed)
    if parsed.action is None:
        assert parsed.reason, "a no-op says why"
        return
    if isinstance(task, BehaviorAnalysis):  # -1 marks a panel user the answer left out
        action = np.asarray(parsed.action)
        assert action.shape == (task.panel_size,)
        assert np.all((action >= -1) & (action < len(BEHAVIOURS)))
        return
    assert task.action_space.contains(np.asarray(parsed.action, dtype=task.action_space.dtype))


@pytest.mark.parametrize("agent", TASKS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=400))
def test_parse_never_raises_and_stays_in_the_action_space(agent: str, text: str) -> None:
    task = TASK_OBJECTS[agent]
    _assert_in_space(task, task.parse(text))


@pytest.mark.parametrize("agent", TASKS)
@settings(max_examples=50, deadline=None)
@given(words=st.lists(st.sampled_from([*TOPIC_NAMES, *BEHAVIOURS, "user", "12", ":", "=", "0.7",
                                       "segment", "intensity", "3", "none", "interest",
                                       "recency", "popularity", "following", ">", "\n", "#"]),
                      max_size=40))
def test_parse_of_format_like_text_stays_in_the_action_space(agent: str, words: list[str]) -> None:
    task = TASK_OBJECTS[agent]
    _assert_in_space(task, task.parse(" ".join(words)))


def test_content_generation_without_analyser() -> None:
    task = ContentGeneration(analyzer=None)
    for empty in ("", "   ", '""', ' " " '):
        assert task.parse(empty) == Parsed(None, "empty post")
    parsed = task.parse("Big match tonight!")
    assert parsed.action is None and "analyser" in parsed.reason


def test_content_generation_with_an_analyser_stub() -> None:
    class Features:
        topic_dist = np.eye(NUM_TOPICS, dtype=np.float32)[[2]]
        sentiment = np.array([0.5])

    seen: list[list[str]] = []

    class Stub:
        def analyze(self, texts: list[str]) -> Features:
            seen.append(texts)
            return Features()

    parsed = ContentGeneration(analyzer=Stub).parse('  "' + "x" * 300 + '"  ')
    assert seen == [["x" * 280]], "quotes and whitespace stripped, cut at 280 characters"
    post = parsed.action
    assert post.text == "x" * 280 and post.sentiment == 0.5 and int(np.argmax(post.topic_dist)) == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("interest=0.9 recency=0.2 popularity=0.1 following=0.4", [0.9, 0.2, 0.1, 0.4]),
    ("Following: 1\nINTEREST = .5\nrecency=0 popularity=0.25", [0.5, 0.0, 0.25, 1.0]),
    ("interest=7 recency=0.3 popularity=0 following=0", [1.0, 0.3, 0.0, 0.0]),  # clipped
])
def test_network_optimization_parse(text: str, expected: list[float]) -> None:
    parsed = NetworkOptimization().parse(text)
    np.testing.assert_allclose(parsed.action, expected, rtol=1e-6)
    assert parsed.action.dtype == np.float32 and not parsed.reason and parsed.complete


def test_network_optimization_partial_answer_is_not_complete() -> None:
    parsed = NetworkOptimization().parse("interest=7 recency=0.3")
    np.testing.assert_allclose(parsed.action, [1.0, 0.3, 0.0, 0.0], rtol=1e-6)
    assert not parsed.complete and "popularity, following" in parsed.reason


def test_network_optimization_parse_keeps_current_weights_for_missing_names() -> None:
    task = NetworkOptimization()
    task.weights = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    np.testing.assert_allclose(task.parse("recency=0.9").action, [0.1, 0.9, 0.3, 0.4], rtol=1e-6)
    assert task.parse("make it better").action is None


def test_trend_prediction_parse_ranks_in_order_of_mention() -> None:
    task = TrendPrediction()
    scores = task.parse("ranking: sports > politics > humor").action
    sports, politics, humor = (TOPIC_NAMES.index(n) for n in ("sports", "politics", "humor"))
    assert scores[sports] > scores[politics] > scores[humor] > 0
    others = np.delete(scores, [sports, politics, humor])
    assert np.all(others == 0)
    single = task.parse("Definitely Science.").action
    assert single[TOPIC_NAMES.index("science")] == 1.0 and single.sum() == 1.0
    assert task.parse("no idea").action is None
    assert not task.parse("ranking: sports > politics > humor").complete
    assert task.parse("ranking: " + " > ".join(TOPIC_NAMES)).complete


@pytest.mark.parametrize(("text", "expected"), [
    ("segment=technology intensity=2", [TOPIC_NAMES.index("technology"), 2]),
    ("Segment: Health, intensity: 3", [TOPIC_NAMES.index("health"), 3]),
    ("segment=sports", [TOPIC_NAMES.index("sports"), 1]),  # intensity defaults to low
    ("none", [0, 0]),
    ("segment=none", [0, 0]),
    ("No campaign this hour.", [0, 0]),
])
def test_user_engagement_parse(text: str, expected: list[int]) -> None:
    np.testing.assert_array_equal(UserEngagement().parse(text).action, expected)


def test_user_engagement_parse_without_segment_is_a_noop() -> None:
    parsed = UserEngagement().parse("intensity=3")
    assert parsed.action is None and parsed.reason


def test_behavior_analysis_parse_reads_classes_in_panel_order() -> None:
    task = BehaviorAnalysis(panel_size=3)
    task.panel = np.array([12, 5, 40])
    parsed = task.parse("lurk\nPOST")
    np.testing.assert_array_equal(parsed.action, [BEHAVIOURS.index("lurk"),
                                                  BEHAVIOURS.index("post"), -1])
    assert "1 panel users not predicted" in parsed.reason and not parsed.complete
    full = task.parse("1. inactive\n2: positive\n3 negative\n4 post")  # extra lines ignored
    np.testing.assert_array_equal(full.action, [0, 2, 3])
    assert full.reason == "" and full.complete
    assert task.parse("posts, positively").action is None  # whole words only
    assert task.parse("everyone lurks").action is None
    copied = "1. next 6%, online 0%, positive 0%, negative 0%, posts 0%, fatigue 0.0\n" * 3
    assert task.parse(copied).action is None  # a copied prompt row is no answer
    assert task.parse("user 1: lurk\n#2 - post\nInactive.").complete


def test_spearman_reward() -> None:
    actual = np.array([5.0, 1.0, 3.0, 0.0, 2.0])
    assert spearman_reward(actual * 2 + 1, actual) == pytest.approx(1.0)
    assert spearman_reward(-actual, actual) == pytest.approx(0.0)
    assert spearman_reward(np.ones(5), actual) == 0.5
    assert spearman_reward(actual, np.zeros(5)) == 0.5
    partial = spearman_reward(np.array([5.0, 1.0, 3.0, 2.0, 0.0]), actual)
    assert 0.5 < partial < 1.0


@pytest.mark.parametrize("agent", TASKS)
def test_render_is_printable_ascii_on_real_observations(agent: str) -> None:
    env = oasis_v0.parallel_env(max_cycles=5, **SMALL)
    obs, _ = env.reset(seed=0)
    policy = HeuristicPolicy(env)
    task = env.tasks[agent]
    for _ in range(3):
        text = task.render(env.vector_observation(agent), env.platform)
        assert text and set(text) <= set(string.printable), repr(set(text) - set(string.printable))
        obs, *_ = env.step(policy(obs))


@pytest.mark.parametrize("agent", TASKS)
def test_prompts_show_no_example_answer(agent: str) -> None:
    """A 135M model copies example answers verbatim: the task's instructions may not contain a
    concrete answer (a topic ranking, a segment, weights, a class line)."""
    env = oasis_v0.parallel_env(max_cycles=5, **SMALL)
    env.reset(seed=1)
    task = env.tasks[agent]
    prompt = task.render(env.vector_observation(agent), env.platform)
    instructions = prompt.rsplit("\n", 1)[-1]
    assert "like '" not in prompt and "e.g." not in instructions
    assert not any(name in instructions.lower() for name in TOPIC_NAMES), instructions
    assert not re.search(r"\d\.\d", instructions), instructions
    assert not re.search(r"user \d", instructions), instructions


@pytest.mark.parametrize("agent", TASKS)
def test_structured_actions_written_as_text_parse_back(agent: str) -> None:
    """``format_action`` writes an action as the complete answer its parser reads back."""
    env = oasis_v0.parallel_env(max_cycles=5, **SMALL)
    env.reset(seed=1)
    task, space = env.tasks[agent], env.tasks[agent].action_space
    space.seed(0)
    topics_read = []
    grid = ([np.array([t, tone]) for t in range(NUM_TOPICS) for tone in range(3)]
            if agent == TaskType.CONTENT_GENERATION.value else [space.sample() for _ in range(20)])
    for action in [heuristic_action(agent, env.vector_observation(agent))] + grid:
        parsed = task.parse(task.format_action(action))
        assert parsed.complete, (task.format_action(action), parsed.reason)
        if agent == TaskType.CONTENT_GENERATION.value:  # a post's topic is read by embedding
            topics_read.append(int(np.argmax(parsed.action.topic_dist)) == action[0])
        elif agent == TaskType.TREND_PREDICTION.value:  # the ranking is what is written
            np.testing.assert_array_equal(np.argsort(-parsed.action, kind="stable"),
                                          np.argsort(-action, kind="stable"))
        elif agent == TaskType.NETWORK_OPTIMIZATION.value:  # two decimals
            np.testing.assert_allclose(parsed.action, action, atol=0.005)
        elif agent == TaskType.USER_ENGAGEMENT.value and action[1] == 0:
            np.testing.assert_array_equal(parsed.action, [0, 0])  # no campaign
        else:
            np.testing.assert_array_equal(parsed.action, action)
    assert not topics_read or np.mean(topics_read) >= 0.8


def test_trend_prediction_rows_are_in_the_heuristics_order() -> None:
    """Copying the rows' order as the answer gives the heuristic's ranking (its weighted mean
    of every past hour the observation holds, more than the three hours shown)."""
    from sandbox_rl.envs.heuristics import trend_prediction

    env = oasis_v0.parallel_env(max_cycles=8, **SMALL)
    env.reset(seed=2)
    for _ in range(5):
        env.step({})
    task = env.tasks["trend_prediction"]
    obs = env.vector_observation("trend_prediction")
    prompt = task.render(obs, env.platform)
    rows = re.findall(r"^(\w+) had (\d+)%", prompt, flags=re.MULTILINE)
    heuristic = trend_prediction(obs)
    assert [name for name, _ in rows] == [TOPIC_NAMES[i] for i in np.argsort(-heuristic,
                                                                              kind="stable")]
    assert [int(share) for _, share in rows] != sorted((int(s) for _, s in rows), reverse=True)
    copied = task.parse("ranking: " + " > ".join(name for name, _ in rows)).action
    assert np.array_equal(np.argsort(-copied, kind="stable"), np.argsort(-heuristic, kind="stable"))
