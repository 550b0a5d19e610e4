"""Counterfactual scoring on a scratch copy: exact replay of live steps, live env untouched."""

from __future__ import annotations

import numpy as np
import pytest

from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.counterfactual import (Counterfactual, counterfactual_rewards, evaluator,
                                            score_action)
from sandbox_rl.envs.state import snapshot
from test_state import SMALL, act, assert_same_state, run


@pytest.mark.parametrize("kwargs", [{}, {"recsys": "reddit"}, {"obs_mode": "text"}],
                         ids=["vector", "reddit", "text"])
def test_live_actions_reproduce_the_live_rewards_exactly(kwargs):
    env = oasis_v0.parallel_env(**SMALL, max_cycles=20, **kwargs)
    env.reset(seed=6)
    for step in range(5):
        snap = snapshot(env)
        actions = act(env, step)
        predicted = counterfactual_rewards(env, snap, actions)
        assert_same_state(env, _twin(snap))  # scoring left the live env as it was
        _, rewards, *_ = env.step(actions)
        assert predicted == rewards


def _twin(snap):
    twin = oasis_v0.parallel_env(**{k: v for k, v in snap.meta["env"].items()})
    twin.load_state_dict(snap.meta, snap.arrays)
    return twin


def test_missing_agents_do_their_noop():
    env = oasis_v0.parallel_env(**SMALL)
    env.reset(seed=0)
    rewards = counterfactual_rewards(env, snapshot(env), {})
    assert rewards["behavior_analysis"] == rewards["trend_prediction"] == 0.0
    assert rewards["content_generation"] == 0.0 and rewards["user_engagement"] == 0.5


def test_reversed_trend_ranking_scores_one_minus():
    # Spearman of reversed scores is minus the correlation: the two rewards sum to 1, unless
    # the step's volumes are constant (both 0.5).
    env = oasis_v0.parallel_env(**SMALL)
    env.reset(seed=2)
    run(env, 3)
    snap = snapshot(env)
    scores = np.linspace(0.1, 1.0, 10).astype(np.float32)
    up, down = evaluator(env).score_candidates(snap, "trend_prediction", [scores, scores[::-1]])
    assert up + down == pytest.approx(1.0) and up != down


def test_candidates_match_single_calls_and_only_the_agent_is_scored():
    env = oasis_v0.parallel_env(**SMALL)
    env.reset(seed=3)
    run(env, 2)
    snap, others = snapshot(env), act(env, 2)
    cands = [np.array([t, 2]) for t in range(10)]
    scores = evaluator(env).score_candidates(snap, "content_generation", cands, others)
    singles = [counterfactual_rewards(env, snap, {**others, "content_generation": c},
                                      ["content_generation"]) for c in cands]
    assert all(s.keys() == {"content_generation"} for s in singles)
    assert scores == [s["content_generation"] for s in singles]
    assert len(set(scores)) > 1, "different posts should fare differently"


def test_score_action_leaves_the_live_env_unchanged():
    env = oasis_v0.parallel_env(**SMALL, max_cycles=20)
    env.reset(seed=4)
    run(env, 3)
    snap = snapshot(env)
    action = act(env, 3)["user_engagement"]
    got = score_action(env, "user_engagement", action)
    assert got == evaluator(env).expected_rewards(snap, "user_engagement", [action])[0]
    twin = _twin(snap)
    assert_same_state(env, twin)
    assert run(env, 4, start=3) == run(twin, 4, start=3)


def test_text_post_is_parsed_like_the_env_does():
    env = oasis_v0.parallel_env(**SMALL, obs_mode="text")
    env.reset(seed=5)
    text = "Huge win for our football team tonight, what a match!"
    snap = snapshot(env)
    got = counterfactual_rewards(env, snap, {"content_generation": text})["content_generation"]
    _, rewards, _, _, infos = env.step({"content_generation": text})
    assert "parse_error" not in infos["content_generation"]
    assert got == rewards["content_generation"]
    assert env.platform.posts.texts[env.platform.last.agent_post] == text
    assert counterfactual_rewards(env, snap, {"content_generation": "   "}) \
        ["content_generation"] == 0.0  # an empty post is the no-op, as in the env


def test_one_scratch_env_per_live_env():
    a, b = oasis_v0.parallel_env(**SMALL), oasis_v0.parallel_env(**SMALL)
    assert evaluator(a) is evaluator(a) and evaluator(a) is not evaluator(b)
    assert evaluator(a).scratch is not a and evaluator(a).scratch.trace_path is None


def test_errors_name_the_problem(tmp_path):
    env = oasis_v0.parallel_env(**SMALL, max_cycles=2, trace_path=str(tmp_path / "t.db"))
    env.reset(seed=0)
    snap = snapshot(env)
    with pytest.raises(ValueError, match="unknown or finished agents"):
        counterfactual_rewards(env, snap, {}, ["dancing"])
    with pytest.raises(ValueError, match="unknown or finished agents"):
        counterfactual_rewards(env, snap, {"dancing": 1})
    with pytest.raises(ValueError, match="EnvSnapshot"):
        counterfactual_rewards(env, env.state_dict(), {})
    other = oasis_v0.parallel_env(**{**SMALL, "num_users": 300})
    other.reset(seed=0)
    with pytest.raises(ValueError, match="num_users"):
        counterfactual_rewards(env, snapshot(other), {})
    run(env, 2)
    with pytest.raises(ValueError, match="finished episode"):
        counterfactual_rewards(env, snapshot(env), {})
    with pytest.raises(ValueError, match="OasisParallelEnv"):
        Counterfactual(object())


def _with_generator_state(env, seed: int) -> None:
    env._np_random.bit_generator.state = np.random.PCG64(seed).state


@pytest.mark.parametrize("agent", ["user_engagement", "content_generation", "trend_prediction"])
def test_scores_for_choosing_never_see_the_steps_own_draws(agent):
    """What the live env will draw in its next step is the future: a score used to choose an
    action (``score_action``, ``expected_rewards``) must not depend on it. The world state is
    the same; only the generator state of the coming step differs."""
    env = oasis_v0.parallel_env(**SMALL, max_cycles=20)
    env.reset(seed=7)
    run(env, 3)
    action = act(env, 3)[agent]
    cf = evaluator(env)
    scores, expected = [], []
    for seed in (1, 2):
        _with_generator_state(env, seed)
        scores.append(score_action(env, agent, action))
        expected.append(cf.expected_rewards(snapshot(env), agent, [action], draws=3)[0])
        own = counterfactual_rewards(env, snapshot(env), {agent: action})[agent]
        expected.append(own)  # the step's own draws do move the reward...
    assert scores[0] == scores[1] and expected[0] == expected[2]
    if agent == "trend_prediction":  # (a small world's other rewards may not move this step)
        assert expected[1] != expected[3]  # ...which is why choosing must not use them


def test_expected_rewards_average_over_common_draws():
    env = oasis_v0.parallel_env(**SMALL, max_cycles=20)
    env.reset(seed=8)
    run(env, 2)
    snap, cf = snapshot(env), evaluator(env)
    cands = [np.array([t, 2]) for t in range(4)]
    one = [cf.expected_rewards(snap, "user_engagement", [c], draws=3, seed=5)[0] for c in cands]
    assert cf.expected_rewards(snap, "user_engagement", cands, draws=3, seed=5) == one
    assert cf.expected_rewards(snap, "user_engagement", [None], draws=2) == [0.5]  # no-op
    with pytest.raises(ValueError, match="draws"):
        cf.expected_rewards(snap, "user_engagement", cands, draws=0)
