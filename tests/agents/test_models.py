"""The model registry: tiny random models, their shared tokenizer, HF-id errors and the embedded GGUF."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from sandbox_rl.agents import models as M
from sandbox_rl.agents.models import (
    LoadedModel,
    ModelNotAvailableError,
    ModelSettings,
    available_models,
    default_lora_targets,
    load_model,
)

TINY = [name for name in available_models() if name.startswith("tiny-")]


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_registry_names() -> None:
    assert available_models() == ["embedded", "tiny-llama", "tiny-mistral", "tiny-qwen2", "tiny-phi", "tiny-gemma"]


def test_import_is_cheap_and_side_effect_free(tmp_path) -> None:
    code = (
        "import sys; import sandbox_rl.agents.models; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    env = {**os.environ, "SANDBOX_RL_CACHE": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tiny_model_loads_and_generates(name: str, dtype: str) -> None:
    loaded = load_model(name, ModelSettings(device="cpu", dtype=dtype))
    assert isinstance(loaded, LoadedModel)
    assert loaded.name == name and loaded.family == name.removeprefix("tiny-")
    assert loaded.source == "random tiny"
    assert not loaded.model.training
    assert all(p.dtype == getattr(torch, dtype) for p in loaded.model.parameters())
    assert loaded.model.config.vocab_size == len(loaded.tokenizer)
    tok = loaded.tokenizer
    assert tok.padding_side == "left" and tok.pad_token == "<pad>" and tok.eos_token == "<|im_end|>"
    batch = tok(["a short one", "a somewhat longer prompt about sports"], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = loaded.model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] > batch.input_ids.shape[1]


@pytest.mark.parametrize("name", TINY)
def test_tiny_weights_are_seeded(name: str) -> None:
    state = torch.get_rng_state()
    a = _weights(load_model(name, ModelSettings(device="cpu", seed=1)).model)
    b = _weights(load_model(name, ModelSettings(device="cpu", seed=1)).model)
    c = _weights(load_model(name, ModelSettings(device="cpu", seed=2)).model)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", TINY)
def test_default_lora_targets_are_linear_modules(name: str) -> None:
    loaded = load_model(name, ModelSettings(device="cpu"))
    linear = {n.rsplit(".", 1)[-1] for n, m in loaded.model.named_modules() if isinstance(m, nn.Linear)}
    targets = default_lora_targets(loaded.family)
    assert set(targets) <= linear, set(targets) - linear
    assert {"q_proj", "v_proj"} <= set(targets)  # PEFT's per-family defaults start there
    if loaded.family == "phi":
        assert {"fc1", "fc2"} <= set(targets)  # Phi's MLP names differ from Llama's


def test_default_lora_targets_unknown_family() -> None:
    with pytest.raises(ValueError, match="no-such-family"):
        default_lora_targets("no-such-family")


def test_tiny_tokenizer_round_trips_and_chats() -> None:
    tok = M.tiny_tokenizer()
    assert 1000 <= len(tok) <= M.TINY_VOCAB_SIZE
    for text in ["Just landed in Paris! #travel 😀", "café au lait, naïve résumé", "  two  spaces\nnewline"]:
        assert tok.decode(tok(text).input_ids) == text
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=True)
    ids = ids["input_ids"] if not isinstance(ids, list) else ids
    assert tok.convert_tokens_to_ids("<|im_start|>") in ids and tok.eos_token_id in ids


def test_tiny_tokenizer_is_cached_and_deterministic(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = M.tiny_tokenizer()
    assert M.tiny_tokenizer_path().is_file()

    def no_training(texts):
        raise AssertionError("retrained although the cache is fresh")

    with monkeypatch.context() as m:
        m.setattr(M, "_train_tiny_bpe", no_training)
        again = M.tiny_tokenizer()
    assert again.get_vocab() == cached.get_vocab()

    # A fresh build elsewhere trains again and yields exactly the same tokenizer file.
    cached_json = M.tiny_tokenizer_path().read_text()
    elsewhere = tmp_path / "tiny-bpe" / "tokenizer.json"
    monkeypatch.setattr(M, "tiny_tokenizer_path", lambda: elsewhere)
    fresh = M.tiny_tokenizer()
    assert elsewhere.read_text() == cached_json
    assert fresh.get_vocab() == cached.get_vocab()


def test_unknown_hf_id_is_not_substituted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ["mistralai/Mistral-7B-Instruct-v0.2", "no-such-org/no-such-model"]:
        with pytest.raises(ModelNotAvailableError, match=re.escape(name)) as info:
            load_model(name)
        # huggingface_hub 1.x removed `huggingface-cli`; the message names its `hf` command.
        assert f"`hf download {name}`" in str(info.value)
        assert "huggingface-cli" not in str(info.value)
        assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", ["float64", "fp16", "int8"])
def test_bad_dtype_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="dtype"):
        ModelSettings(dtype=bad)


def test_default_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert ModelSettings().resolved_device() == expected
    assert ModelSettings(device="cpu").resolved_device() == "cpu"


@pytest.mark.slow
def test_embedded_caches_dequantised_weights(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("SANDBOX_RL_CACHE", str(tmp_path))
    settings = ModelSettings(device="cpu")
    first = load_model("embedded", settings)
    assert first.source == "embedded gguf" and first.family == "llama"
    assert (tmp_path / "models" / "embedded" / "model.safetensors").is_file()
    again = load_model("embedded", settings)
    assert again.source == "local cache"
    # The tied lm_head (left out of the safetensors file) is re-tied on reload.
    assert again.model.lm_head.weight.data_ptr() == again.model.model.embed_tokens.weight.data_ptr()

    gguf_path = M.embedded_gguf_path()
    direct = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name).eval()
    tok = again.tokenizer
    batch = tok(["The quick brown fox jumps over the lazy dog."], return_tensors="pt")
    with torch.no_grad():
        reference = direct(**batch).logits
        torch.testing.assert_close(first.model(**batch).logits, reference, atol=1e-4, rtol=0)
        torch.testing.assert_close(again.model(**batch).logits, reference, atol=1e-4, rtol=0)

    prompt = tok(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        out = again.model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert "Paris" in tok.decode(out[0, prompt.input_ids.shape[1]:])
