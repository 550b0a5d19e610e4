"""Batched multi-adapter generation (tiny models)."""

from __future__ import annotations

import pytest
import torch

from sandbox_rl.agents.generation import GenerationRequest, SamplingSettings, generate_batch
from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import load_model

NAMES = ["t1", "t2", "t3"]


@pytest.fixture(scope="module")
def adapters() -> TaskAdapters:
    adapters = TaskAdapters(load_model("tiny-llama"), NAMES, LoraSettings(rank=4))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name in NAMES:
            for p in adapters.parameters(name):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return adapters


def _requests(**sampling) -> list[GenerationRequest]:
    prompts = ["good morning friends", "the game last night", "new phone who dis", "hello"]
    names = NAMES + [None]
    return [GenerationRequest(p, n, SamplingSettings(max_new_tokens=6 + i, **sampling))
            for i, (p, n) in enumerate(zip(prompts, names))]


def test_batched_equals_sequential_under_greedy(adapters):
    requests = _requests()
    batched = generate_batch(adapters.model, adapters.tokenizer, requests)
    for request, out in zip(requests, batched):
        alone = generate_batch(adapters.model, adapters.tokenizer, [request])[0]
        assert out.token_ids == alone.token_ids
        assert out.completion_tokens <= request.sampling.max_new_tokens
    assert len({c.token_ids for c in batched}) > 1, "different adapters should differ"


def test_rows_really_use_their_adapter(adapters):
    prompt = "the game last night"
    outs = generate_batch(adapters.model, adapters.tokenizer,
                          [GenerationRequest(prompt, n, SamplingSettings(max_new_tokens=8))
                           for n in NAMES])
    assert len({o.token_ids for o in outs}) == len(NAMES)


def test_sampling_is_seeded_and_leaves_global_rng(adapters):
    requests = _requests(temperature=1.0, top_p=0.9)
    state = torch.random.get_rng_state()
    a = generate_batch(adapters.model, adapters.tokenizer, requests, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    b = generate_batch(adapters.model, adapters.tokenizer, requests, seed=3)
    c = generate_batch(adapters.model, adapters.tokenizer, requests, seed=4)
    assert [x.token_ids for x in a] == [x.token_ids for x in b]
    assert [x.token_ids for x in a] != [x.token_ids for x in c]


def test_stop_strings_and_budgets(adapters):
    free = generate_batch(adapters.model, adapters.tokenizer,
                          [GenerationRequest("good morning", "t1", SamplingSettings(max_new_tokens=12))])[0]
    assert free.finish_reason == "length" and free.completion_tokens == 12
    stop = free.text[3:6]
    stopped = generate_batch(adapters.model, adapters.tokenizer,
                             [GenerationRequest("good morning", "t1",
                                                SamplingSettings(max_new_tokens=12, stop=(stop,)))])[0]
    assert stopped.finish_reason == "stop" and stop not in stopped.text
    assert free.text.startswith(stopped.text)


@pytest.mark.parametrize("field,value", [("max_new_tokens", 0), ("temperature", -1.0),
                                         ("top_p", 0.0)])
def test_bad_sampling_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingSettings(**{field: value})
