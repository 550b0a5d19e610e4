"""The embedded model acts for all five tasks through five adapters in one batched call."""

from __future__ import annotations

import pytest

from sandbox_rl.agents.policy import LLMPolicy, build_task_adapters
from sandbox_rl.enums import TaskType
from sandbox_rl.envs import oasis_v0


@pytest.mark.slow
def test_embedded_model_generates_parseable_actions_for_all_tasks():
    adapters = build_task_adapters("embedded")
    assert adapters.loaded.name == "embedded"
    assert sorted(adapters.names) == sorted(t.value for t in TaskType)
    env = oasis_v0.parallel_env(obs_mode="text", num_users=1000, max_cycles=1)
    observations, _ = env.reset(seed=0)
    policy = LLMPolicy(adapters)
    calls = []
    generate = adapters.model.generate

    def counting_generate(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return generate(*args, **kwargs)

    adapters.model.generate = counting_generate
    actions = policy(observations)
    assert calls == [5]  # one generate call with the five prompts as rows
    assert {a: c.adapter for a, c in policy.last_completions.items()} == {a: a for a in actions}
    _, rewards, _, _, infos = env.step(actions)
    for agent in env.possible_agents:
        parsed = env.tasks[agent].parse(actions[agent])
        assert parsed.action is not None, (agent, actions[agent], parsed.reason)
        assert 0.0 <= rewards[agent] <= 1.0
