"""The LLM policy in the text-mode env (tiny model), with and without a quantised KV cache."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from sandbox_rl.agents.generation import generate_batch
from sandbox_rl.agents.kv_cache import KVCacheSettings, cache_nbytes, make_cache
from sandbox_rl.agents.lora import LoraSettings
from sandbox_rl.agents.policy import LLMPolicy, build_task_adapters, to_action_text
from sandbox_rl.agents.task_specs import spec
from sandbox_rl.enums import TaskType
from sandbox_rl.envs import oasis_v0

QUANTO = KVCacheSettings(backend="quanto", nbits=4, q_group_size=32, residual_length=8)


@pytest.fixture(scope="module")
def adapters():
    return build_task_adapters("tiny-llama", LoraSettings(rank=4))


def test_policy_acts_for_every_agent_in_one_call(adapters):
    env = oasis_v0.parallel_env(obs_mode="text", num_users=200, max_cycles=2)
    obs, _ = env.reset(seed=0)
    policy = LLMPolicy(adapters)
    while env.agents:
        actions = policy(obs)
        assert set(actions) == set(env.agents)
        assert all(env.action_space(a).contains(t) for a, t in actions.items())
        assert {c.adapter for c in policy.last_completions.values()} == {t.value for t in TaskType}
        obs, rewards, _, _, infos = env.step(actions)
        assert all(0.0 <= r <= 1.0 for r in rewards.values())


def test_generation_really_uses_the_quantised_cache(adapters):
    made = []

    def factory():
        made.append(make_cache(adapters.model.config, QUANTO))
        return made[-1]

    policy = LLMPolicy(adapters, kv_cache=QUANTO)
    requests = policy.requests({"trend_prediction": "Topic shares: sports 30%, politics 20%."})
    plain = generate_batch(adapters.model, adapters.tokenizer, requests)
    out = generate_batch(adapters.model, adapters.tokenizer, requests, cache_factory=factory)
    assert len(made) == 1 and out[0].completion_tokens > 0
    assert make_cache(adapters.model.config, KVCacheSettings(enabled=False)) is None
    dense = [DynamicCache()]
    again = generate_batch(adapters.model, adapters.tokenizer, requests,
                           cache_factory=lambda: dense[0])
    assert again[0].token_ids == plain[0].token_ids
    assert type(made[0]).__name__ == "QuantizedCache"
    assert 0 < cache_nbytes(made[0]) < cache_nbytes(dense[0]) / 2


def test_action_text_is_printable_and_bounded():
    assert to_action_text("  héllo 🌟 world  ", 8) == "h?llo ? "[:8]


def test_policy_prefix_caches_match_and_follow_training(adapters):
    env = oasis_v0.parallel_env(obs_mode="text", num_users=200, max_cycles=2)
    obs, _ = env.reset(seed=1)
    cached, plain = LLMPolicy(adapters), LLMPolicy(adapters, prefix_cache=False)
    assert cached(obs) == plain(obs)
    assert cached.prefix_caches().computed == len(obs)
    cached._calls = plain._calls = 0  # same sampling seed again
    saved = adapters.state("trend_prediction")
    try:
        with torch.no_grad():  # a training step between env steps
            for p in adapters.parameters("trend_prediction"):
                p.add_(0.05)
        assert cached(obs) == plain(obs)
        assert cached.prefix_caches().computed == len(obs) + 1
    finally:
        adapters.load_state("trend_prediction", saved)


def test_policy_batches_every_task_through_a_quantised_cache(adapters):
    env = oasis_v0.parallel_env(obs_mode="text", num_users=200, max_cycles=2)
    obs, _ = env.reset(seed=2)
    policy = LLMPolicy(adapters, kv_cache=QUANTO)
    actions = policy(obs)
    assert all(env.action_space(a).contains(t) for a, t in actions.items())
    budgets = {a: r.sampling.max_new_tokens for a, r in zip(obs, policy.requests(obs))}
    for agent, completion in policy.last_completions.items():
        assert 0 < completion.completion_tokens <= budgets[agent]
    lengths = {c.completion_tokens for c in policy.last_completions.values()}
    assert len(lengths) > 1, "rows finish at different steps, so some leave the batch early"
