"""The embedded model acts for all five tasks through five adapters in one batched call."""

from __future__ import annotations

import pytest

from sandbox_rl.agents import policy as policy_module
from sandbox_rl.agents.generation import generate_batch
from sandbox_rl.agents.policy import LLMPolicy, build_task_adapters
from sandbox_rl.enums import TaskType
from sandbox_rl.envs import oasis_v0


@pytest.mark.slow
def test_embedded_model_generates_parseable_actions_for_all_tasks(monkeypatch):
    adapters = build_task_adapters("embedded")
    assert adapters.loaded.name == "embedded"
    assert sorted(adapters.names) == sorted(t.value for t in TaskType)
    env = oasis_v0.parallel_env(obs_mode="text", num_users=1000, max_cycles=1)
    observations, _ = env.reset(seed=0)
    policy = LLMPolicy(adapters)
    calls = []

    def counting_generate_batch(model, tokenizer, requests, *args, **kwargs):
        calls.append(sorted(r.adapter for r in requests))
        return generate_batch(model, tokenizer, requests, *args, **kwargs)

    monkeypatch.setattr(policy_module, "generate_batch", counting_generate_batch)
    actions = policy(observations)
    # One batched call: the five prompts as rows, each through its own task's adapter.
    assert calls == [sorted(t.value for t in TaskType)]
    assert {a: c.adapter for a, c in policy.last_completions.items()} == {a: a for a in actions}
    _, rewards, _, _, infos = env.step(actions)
    for agent in env.possible_agents:
        parsed = env.tasks[agent].parse(actions[agent])
        assert parsed.action is not None, (agent, actions[agent], parsed.reason)
        assert 0.0 <= rewards[agent] <= 1.0
