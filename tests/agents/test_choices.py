"""Constrained decoding of closed-set answers (``agents/choices.py``), on the tiny models."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox_rl.agents.choices import Choices, ChoiceState
from sandbox_rl.agents.generation import SamplingSettings, generate_batch
from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import load_model
from sandbox_rl.agents.policy import env_action
from sandbox_rl.agents.task_specs import TASK_SPECS, spec
from sandbox_rl.enums import TaskType
from sandbox_rl.envs import oasis_v0
from sandbox_rl.envs.heuristics import HeuristicPolicy
from sandbox_rl.envs.platform import BEHAVIOURS
from sandbox_rl.envs.tasks import make_tasks
from sandbox_rl.envs.topics import NUM_TOPICS

CLOSED = [t for t, s in TASK_SPECS.items() if s.choices("Answer 8 lines") is not None]


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-llama")


@pytest.fixture(scope="module")
def adapters(tiny) -> TaskAdapters:
    adapters = TaskAdapters(tiny, [t.value for t in TaskType], LoraSettings(rank=4))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in adapters.names:
            for p in adapters.parameters(name):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return adapters


def test_the_closed_set_tasks_are_classes_ranking_and_campaign():
    assert set(CLOSED) == {TaskType.BEHAVIOR_ANALYSIS, TaskType.TREND_PREDICTION,
                           TaskType.USER_ENGAGEMENT}


def test_closed_answers_are_every_answer_of_a_one_choice_set():
    """user_engagement's closed set is 31 campaigns, each parsing to a distinct complete action;
    sequences of choices (a ranking, several panel users) and free text have none."""
    env = oasis_v0.parallel_env(num_users=200, obs_mode="text", attach_tweets=False)
    observations, _ = env.reset(seed=0)
    campaigns = spec(TaskType.USER_ENGAGEMENT).closed_answers(observations["user_engagement"])
    task = make_tasks()["user_engagement"]
    parsed = [task.parse(a) for a in campaigns]
    assert all(p.action is not None and p.reason == "" for p in parsed)
    assert sorted(tuple(int(x) for x in p.action) for p in parsed) == [(0, 0)] + [
        (s, level) for s in range(NUM_TOPICS) for level in (1, 2, 3)]
    assert spec(TaskType.BEHAVIOR_ANALYSIS).closed_answers("Answer 1 lines") == list(BEHAVIOURS)
    for task_type, observation in ((TaskType.BEHAVIOR_ANALYSIS, "Answer 8 lines"),
                                   (TaskType.TREND_PREDICTION, ""),
                                   (TaskType.CONTENT_GENERATION, ""),
                                   (TaskType.NETWORK_OPTIMIZATION, "")):
        assert spec(task_type).closed_answers(observation) is None, task_type


@pytest.mark.parametrize("bad", [dict(first=()), dict(first=("a", "")), dict(first=("a",), slots=0),
                                 dict(first=("a", "b"), slots=2),
                                 dict(first=("a", "b"), rest=("a",), slots=2),
                                 dict(first=("a", "b"), rest=("a", "b"), slots=3, distinct=True)])
def test_invalid_choices_are_refused_naming_the_field(bad):
    with pytest.raises(ValueError, match="invalid"):
        Choices(**bad)


def test_options_whose_tokens_start_another_are_refused(tiny):
    with pytest.raises(ValueError, match="start the other"):
        ChoiceState(Choices(("post", "post post")), tiny.tokenizer)


def test_a_token_outside_the_allowed_set_is_refused(tiny):
    state = ChoiceState(Choices(("lurk", "post")), tiny.tokenizer)
    bad = next(i for i in range(len(tiny.tokenizer)) if i not in state.allowed())
    with pytest.raises(ValueError, match="does not continue"):
        state.advance(bad)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), task=st.sampled_from(CLOSED))
def test_any_walk_through_the_allowed_tokens_writes_a_valid_answer(tiny, data, task):
    """Whatever token the model picks among the allowed ones, the text is the answer of the
    picks, a ranking never repeats a topic, and the answer ends after its last slot."""
    choices = spec(task).choices("Answer 8 lines")
    state, ids = ChoiceState(choices, tiny.tokenizer), []
    while not state.done:
        allowed = state.allowed()
        assert allowed
        ids.append(data.draw(st.sampled_from(allowed)))
        state.advance(ids[-1])
    assert state.allowed() == [] and len(state.picks) == choices.slots
    assert tiny.tokenizer.decode(ids) == choices.text(state.picks)
    if choices.distinct:
        assert len(set(state.picks)) == len(state.picks)


def _observations(steps: int = 3, seed: int = 1000) -> list[dict[str, str]]:
    env = oasis_v0.parallel_env(num_users=200, obs_mode="text")
    obs, _ = env.reset(seed=seed)
    heuristic, out = HeuristicPolicy(env), []
    for _ in range(steps):
        out.append({a: env.text_observation(a) for a in env.agents})
        obs, *_ = env.step(heuristic(obs))
    env.close()
    return out


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_every_closed_set_answer_parses_completely_on_the_tiny_model(adapters, temperature):
    """Greedy and sampled, through random adapters of the tiny model: every answer of the three
    closed-set tasks is complete (all panel users classified, all ten topics ranked once, a
    segment with an intensity or 'none'), in one batch with free-text rows beside them."""
    env = oasis_v0.parallel_env(num_users=200, obs_mode="text")
    env.reset(seed=1000)
    for k, observations in enumerate(_observations()):
        requests = [spec(a).request(adapters.tokenizer, o, a, SamplingSettings(
            spec(a).sampling.max_new_tokens, temperature, 1.0, spec(a).sampling.stop))
            for a, o in observations.items()]
        outs = generate_batch(adapters.model, adapters.tokenizer, requests, seed=k)
        for (agent, obs), request, out in zip(observations.items(), requests, outs):
            if request.choices is None:
                continue
            answer = spec(agent).answer(obs, out.text)
            parsed = env.tasks[agent].parse(env_action(answer))  # the text the env receives
            assert parsed.complete, (agent, answer, parsed)
            assert out.finish_reason == "stop" and out.completion_tokens <= request.sampling.max_new_tokens
    env.close()


def test_greedy_choices_are_the_arg_max_among_the_options(adapters):
    """One slot of one-token options: the greedy pick is the option with the highest
    next-token logit (classification by the model's own probabilities)."""
    tok = adapters.tokenizer
    options = ("the", "and", "you", "love", "good", "lurk", "post")
    ids = [tok(o, add_special_tokens=False)["input_ids"] for o in options]
    options = tuple(o for o, i in zip(options, ids) if len(i) == 1)
    assert len(options) >= 2
    request = replace(spec(TaskType.BEHAVIOR_ANALYSIS).request(tok, "x", None),
                      choices=Choices(options))
    out = generate_batch(adapters.model, tok, [request])[0]
    with torch.no_grad(), adapters.model.disable_adapter():  # adapter None: the base model
        prompt = tok(request.prompt, return_tensors="pt", add_special_tokens=False)
        logits = adapters.model(**prompt).logits[0, -1]
    best = max(options, key=lambda o: float(logits[tok(o, add_special_tokens=False)["input_ids"][0]]))
    assert out.text == best
