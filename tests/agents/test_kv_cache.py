"""KV-cache compression and the prefix cache, on a tiny random Llama (token ids, no tokenizer)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from sandbox_rl.agents.kv_cache import (
    KVCacheSettings,
    PrefixCache,
    PrefixCacheStore,
    cache_nbytes,
    make_cache,
    perplexity,
)

# One token's cached states are 2 kv heads x 16 dims = 32 values, so the group size must divide 32.
QUANTO = KVCacheSettings(backend="quanto", nbits=4, q_group_size=32, residual_length=32)
FP8 = KVCacheSettings(backend="fp8", nbits=8)
GREEDY = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)


def tiny_llama(seed: int = 0, dtype=torch.float32) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=512, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    return LlamaForCausalLM(config).to(dtype).eval()


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    return tiny_llama()


def random_ids(length: int, seed: int = 1, batch: int = 1) -> torch.Tensor:
    return torch.randint(3, 512, (batch, length), generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def prefilled(model, settings, length: int = 256, seed: int = 1):
    cache = make_cache(model.config, settings) if settings else DynamicCache(config=model.config)
    logits = model(random_ids(length, seed), past_key_values=cache, use_cache=True).logits
    return cache, logits


# ------------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"backend": "int3"}, "backend"),
        ({"backend": "quanto", "nbits": 3}, "nbits"),
        ({"backend": "quanto", "nbits": 8}, "nbits"),
        ({"backend": "hqq", "nbits": 9}, "nbits"),
        ({"backend": "fp8", "nbits": 4}, "nbits"),
        ({"q_group_size": 0}, "q_group_size"),
        ({"residual_length": -1}, "residual_length"),
    ],
)
def test_settings_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        KVCacheSettings(**kwargs)


def test_valid_settings_and_disabled_cache(model):
    KVCacheSettings(backend="hqq", nbits=3)
    assert make_cache(model.config, KVCacheSettings(enabled=False)) is None


def test_group_size_must_divide_token_states(model):
    with pytest.raises(ValueError, match="q_group_size"):
        make_cache(model.config, KVCacheSettings(q_group_size=64))


def test_hqq_backend_without_package_says_install(model):
    from transformers.utils import is_hqq_available

    if is_hqq_available():
        pytest.skip("hqq is installed")
    with pytest.raises(ImportError, match="pip install hqq"):
        make_cache(model.config, KVCacheSettings(backend="hqq", nbits=4, q_group_size=32))


# ------------------------------------------------------------------------------- compression


def test_quanto_cache_is_really_quantised(model):
    dense, dense_logits = prefilled(model, None)
    quanto, quanto_logits = prefilled(model, QUANTO)
    assert quanto.get_seq_length() == dense.get_seq_length() == 256
    assert cache_nbytes(dense) == 2 * 2 * 256 * 2 * 16 * 4  # k+v, layers, seq, heads, dim, fp32
    assert cache_nbytes(dense) / cache_nbytes(quanto) > 2
    # The prefill attends to full precision; the next token attends to the dequantised cache.
    step = random_ids(1, seed=7)
    with torch.no_grad():
        dense_next = model(step, past_key_values=dense, use_cache=True).logits
        quanto_next = model(step, past_key_values=quanto, use_cache=True).logits
    assert torch.equal(dense_logits, quanto_logits)
    assert not torch.equal(dense_next, quanto_next)
    assert torch.allclose(dense_next, quanto_next, atol=0.05)


def test_quanto_residual_window_stays_full_precision(model):
    cache, _ = prefilled(model, QUANTO, length=64)
    with torch.no_grad():
        for token in random_ids(5, seed=3)[0]:
            model(token.view(1, 1), past_key_values=cache, use_cache=True)
    layer = cache.layers[0]
    assert layer.keys.shape[-2] == 5 and layer.keys.dtype == torch.float32
    assert cache.get_seq_length() == 69


@pytest.mark.parametrize(("dtype", "ratio"), [(torch.float32, 4.0), (torch.float16, 2.0)])
def test_fp8_cache_bytes(dtype, ratio):
    model = tiny_llama(dtype=dtype)
    dense, _ = prefilled(model, None)
    fp8, _ = prefilled(model, FP8)
    assert fp8.layers[0]._quantized_keys[0].dtype == torch.float8_e4m3fn
    # fp8 keeps no residual; the only overhead is one scalar scale per tensor.
    assert cache_nbytes(dense) / cache_nbytes(fp8) == pytest.approx(ratio, rel=0.01)


# ------------------------------------------------------------------------------- perplexity


def test_perplexity_uncompressed_matches_full_forward(model):
    ids = random_ids(96, seed=5)
    with torch.no_grad():
        logits = model(ids).logits
    reference = math.exp(torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:]).item())
    assert perplexity(model, ids, None) == pytest.approx(reference, rel=1e-4)
    assert perplexity(model, ids, KVCacheSettings(enabled=False), chunk_size=16) == pytest.approx(reference, rel=1e-4)


def test_perplexity_compressed_differs_but_stays_close(model):
    ids = random_ids(96, seed=5)
    dense = perplexity(model, ids, None)
    for settings in (QUANTO, FP8):
        compressed = perplexity(model, ids, settings)
        assert compressed != dense
        assert compressed == pytest.approx(dense, rel=0.05)


# ------------------------------------------------------------------------------- prefix cache


@pytest.mark.parametrize("settings", [None, QUANTO, FP8])
def test_prefix_cache_gives_same_greedy_tokens(model, settings):
    prefix = random_ids(40, seed=11)
    full = torch.cat([prefix, random_ids(9, seed=12)], dim=1)
    expected = model.generate(full, past_key_values=make_cache(model.config, settings) if settings else None, **GREEDY)
    cache = PrefixCache.compute(model, prefix)
    got = cache.generate(model, full, settings, **GREEDY)
    if settings is None:
        assert torch.equal(got, expected)
    else:  # the prefix is quantised before the suffix attends to it, not within one prefill
        assert got.shape == expected.shape


def test_prefix_cache_prefills_only_the_suffix(model):
    prefix = random_ids(40, seed=11)
    full = torch.cat([prefix, random_ids(9, seed=12)], dim=1)
    cache = PrefixCache.compute(model, prefix).cache_for(model.config, full)
    assert cache.get_seq_length() == 40
    only_prefix = PrefixCache.compute(model, prefix).cache_for(model.config, prefix)
    assert only_prefix.get_seq_length() == 39  # generate needs one token to prefill


def test_prefix_cache_batches_padded_between_prefix_and_suffix(model):
    prefix = random_ids(30, seed=21)
    suffixes = [random_ids(9, seed=22)[0].tolist(), random_ids(4, seed=23)[0].tolist()]
    cache = PrefixCache.compute(model, prefix)
    input_ids, mask = cache.batch_inputs(suffixes, pad_token_id=0)
    got = cache.generate(model, input_ids, attention_mask=mask, **GREEDY)[:, input_ids.shape[1]:]
    for row, suffix in enumerate(suffixes):
        alone = torch.cat([prefix, torch.tensor([suffix])], dim=1)
        expected = model.generate(alone, **GREEDY)[0, alone.shape[1]:]
        assert torch.equal(got[row], expected)
    left_padded = torch.zeros_like(mask)
    left_padded[:, 2:] = 1
    with pytest.raises(ValueError, match="prefix"):
        cache.cache_for(model.config, input_ids, attention_mask=left_padded)


def test_prefix_cache_rejects_other_ids(model):
    cache = PrefixCache.compute(model, random_ids(20, seed=31))
    with pytest.raises(ValueError, match="prefix"):
        cache.cache_for(model.config, random_ids(30, seed=32))


def test_prefix_cache_save_load_round_trip(model, tmp_path):
    prefix = random_ids(20, seed=41)
    cache = PrefixCache.compute(model, prefix)
    path = tmp_path / "task.safetensors"
    cache.save(path)
    loaded = PrefixCache.load(path, model, prefix)
    assert loaded.prefix_ids == cache.prefix_ids and loaded.fingerprint == cache.fingerprint
    for a, b in zip(cache.keys + cache.values, loaded.keys + loaded.values, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    with open(path, "rb") as handle:
        assert b"pickle" not in handle.read(4096).lower()


def test_prefix_cache_load_refuses_other_model_or_prefix(model, tmp_path):
    prefix = random_ids(20, seed=41)
    path = tmp_path / "task.safetensors"
    PrefixCache.compute(model, prefix).save(path)
    with pytest.raises(ValueError, match="another model"):
        PrefixCache.load(path, tiny_llama(seed=1), prefix)
    with pytest.raises(ValueError, match="another model"):
        PrefixCache.load(path, tiny_llama(dtype=torch.float16), prefix)
    with pytest.raises(ValueError, match="another prefix"):
        PrefixCache.load(path, model, random_ids(20, seed=42))


def test_prefix_cache_store_computes_persists_and_reloads(model, tmp_path):
    prefix = random_ids(20, seed=51)
    store = PrefixCacheStore(model, tmp_path)
    first = store.get("reply_task", prefix)
    assert store.get("reply_task", prefix) is first
    path = store.path("reply_task")
    assert path.exists()
    reloaded = PrefixCacheStore(model, tmp_path).get("reply_task", prefix)
    assert reloaded is not first and torch.equal(reloaded.keys[0], first.keys[0])
    changed = random_ids(25, seed=52)
    assert PrefixCacheStore(model, tmp_path).get("reply_task", changed).prefix_ids == changed[0].tolist()
    assert PrefixCache.load(path).prefix_ids == changed[0].tolist()
    with pytest.raises(ValueError, match="names"):
        store.path("../escape")


def test_adapter_fingerprint_follows_weights_and_scaling():
    from peft.tuners.lora.layer import LoraLayer

    from sandbox_rl.agents.kv_cache import adapter_fingerprint
    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model

    adapters = TaskAdapters(load_model("tiny-llama"), ["a", "b"], LoraSettings(rank=2))
    model = adapters.model
    before = {n: adapter_fingerprint(model, n) for n in ("a", "b", None)}
    assert len(set(before.values())) == 3
    assert adapter_fingerprint(model, "a") == before["a"], "deterministic"
    with torch.no_grad():
        adapters.parameters("a")[0].data[0, 0] += 1e-3  # through .data: no version bump
    assert adapter_fingerprint(model, "a") != before["a"]
    assert adapter_fingerprint(model, "b") == before["b"]
    layer = next(m for m in model.modules() if isinstance(m, LoraLayer) and "b" in m.scaling)
    layer.scaling["b"] *= 2
    assert adapter_fingerprint(model, "b") != before["b"]


def test_store_lookup_refuses_other_fingerprints(model, tmp_path):
    store = PrefixCacheStore(model, tmp_path)
    prefix = PrefixCache.compute(model, random_ids(12, seed=4))
    prefix.fingerprint = store.combined("adapter-v1")
    store.put("task.x", prefix)
    assert store.lookup("task.x", prefix.prefix_ids, store.combined("adapter-v1")) is prefix
    assert store.lookup("task.x", prefix.prefix_ids, store.combined("adapter-v2")) is None
    reloaded = PrefixCacheStore(model, tmp_path)
    assert reloaded.lookup("task.x", prefix.prefix_ids, store.combined("adapter-v1")) is not None
    assert reloaded.lookup("task.x", prefix.prefix_ids, store.combined("adapter-v2")) is None
    assert PrefixCacheStore(model, tmp_path, persist=False).lookup(
        "task.x", prefix.prefix_ids, store.combined("adapter-v1")) is None
