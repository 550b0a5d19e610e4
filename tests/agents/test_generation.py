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


def test_one_row_equals_transformers_generate(adapters):
    """The hand-written decode loop (positions, cache, routing) against PEFT's own generate."""
    tok = adapters.tokenizer
    for name in NAMES:
        request = GenerationRequest("the game last night", name, SamplingSettings(max_new_tokens=10))
        ours = generate_batch(adapters.model, tok, [request])[0]
        ids = tok(request.prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            theirs = adapters.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                             adapter_names=[name], do_sample=False, max_new_tokens=10,
                                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        expected = theirs[0, ids.shape[1]:].tolist()
        if tok.eos_token_id in expected:
            expected = expected[: expected.index(tok.eos_token_id)]
        assert list(ours.token_ids) == expected


def test_finished_rows_leave_the_batch(adapters):
    sizes = []
    hook = adapters.model.get_base_model().model.embed_tokens.register_forward_hook(
        lambda module, args, out: sizes.append(args[0].shape))
    try:
        outs = generate_batch(adapters.model, adapters.tokenizer, _requests())
    finally:
        hook.remove()
    decode = [shape[0] for shape in sizes if shape[1] == 1]
    assert sizes[:4] == [(1, len(adapters.tokenizer(r.prompt, add_special_tokens=False)["input_ids"]))
                         for r in _requests()], "each row is prefilled on its own"
    assert decode == sorted(decode, reverse=True) and decode[0] == 4 and decode[-1] == 1
    assert len(decode) == max(o.completion_tokens for o in outs) - 1


def test_min_new_tokens_and_unknown_arguments(adapters):
    request = GenerationRequest("hello", "t2", SamplingSettings(max_new_tokens=7))
    out = generate_batch(adapters.model, adapters.tokenizer, [request], min_new_tokens=7)[0]
    assert out.completion_tokens == 7
    with pytest.raises(TypeError, match="num_beams"):
        generate_batch(adapters.model, adapters.tokenizer, [request], num_beams=2)


def test_request_validation():
    with pytest.raises(ValueError, match="prompt"):
        GenerationRequest("")
    with pytest.raises(ValueError, match="prefix"):
        GenerationRequest("hello world", prefix="world")


def _prefixed(adapters, system: str = "You answer in one short line.\n") -> list[GenerationRequest]:
    return [GenerationRequest(system + p, n, SamplingSettings(max_new_tokens=5 + i), prefix=system)
            for i, (p, n) in enumerate(zip(["good morning", "the game last night", "hi"], NAMES))]


def test_prefix_caches_per_adapter_reused_and_invalidated(adapters, tmp_path):
    from sandbox_rl.agents.kv_cache import PrefixCacheStore

    model, tok = adapters.model, adapters.tokenizer
    requests = _prefixed(adapters)
    plain = [c.token_ids for c in generate_batch(model, tok, requests)]
    store = PrefixCacheStore(model, tmp_path)
    assert [c.token_ids for c in generate_batch(model, tok, requests, prefix_caches=store)] == plain
    assert store.computed == len(NAMES), "one prefix per adapter"
    assert [c.token_ids for c in generate_batch(model, tok, requests, prefix_caches=store)] == plain
    assert store.computed == len(NAMES), "reused, not recomputed"
    fresh = PrefixCacheStore(model, tmp_path)  # reloaded from disk
    assert [c.token_ids for c in generate_batch(model, tok, requests, prefix_caches=fresh)] == plain
    assert fresh.computed == 0

    # A prefix whose last token merges with the prompt's next text is not cached (the BPE
    # tokenizer attaches the space to the next word): same tokens, nothing computed.
    merged = _prefixed(adapters, "You answer in one short line. ")
    other = PrefixCacheStore(model, persist=False)
    assert ([c.token_ids for c in generate_batch(model, tok, merged, prefix_caches=other)]
            == [c.token_ids for c in generate_batch(model, tok, merged)])
    assert other.computed == 0

    saved = adapters.state("t2")
    try:
        with torch.no_grad():  # as a PPO step would: t2's weights change in place
            for p in adapters.parameters("t2"):
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) * 0.5)
        changed = [c.token_ids for c in generate_batch(model, tok, requests)]
        assert changed[1] != plain[1] and changed[0] == plain[0]
        again = [c.token_ids for c in generate_batch(model, tok, requests, prefix_caches=store)]
        assert again == changed, "a stale prefix of t2 would give the old adapter's tokens"
        assert store.computed == len(NAMES) + 1, "only t2's prefix is recomputed"
    finally:
        adapters.load_state("t2", saved)


def test_prefix_cache_states_depend_on_the_adapter(adapters):
    from sandbox_rl.agents.kv_cache import PrefixCacheStore

    store = PrefixCacheStore(adapters.model, persist=False)
    requests = _prefixed(adapters)
    generate_batch(adapters.model, adapters.tokenizer, [requests[0], requests[0]], prefix_caches=store)
    assert store.computed == 1, "equal (adapter, prefix) rows share one cache"
    other = GenerationRequest(requests[0].prompt, "t2", requests[0].sampling, requests[0].prefix)
    generate_batch(adapters.model, adapters.tokenizer, [other], prefix_caches=store)
    first, second = store._memory.values()
    assert not torch.allclose(first.values[0], second.values[0]), "LoRA on v changes the cached values"
