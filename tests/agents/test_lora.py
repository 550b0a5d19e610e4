"""Task adapters on one shared base: independence, save/load, merge (tiny models)."""

from __future__ import annotations

import pytest
import torch

from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import default_lora_targets, load_model

NAMES = ["content_generation", "behavior_analysis", "network_optimization"]


def _adapters(model: str = "tiny-llama", **lora) -> TaskAdapters:
    return TaskAdapters(load_model(model), NAMES, LoraSettings(**lora))


def _base_state(adapters: TaskAdapters) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in adapters.model.named_parameters() if "lora_" not in n}


def _logits(adapters: TaskAdapters, name: str, ids: torch.Tensor) -> torch.Tensor:
    adapters.model.set_adapter(name)
    with torch.no_grad():
        return adapters.model(input_ids=ids).logits


def test_training_one_adapter_changes_only_its_weights():
    adapters = _adapters()
    before = {n: adapters.state(n) for n in NAMES}
    base = _base_state(adapters)
    target = NAMES[1]
    adapters.model.set_adapter(target)
    adapters.model.train()
    params = adapters.parameters(target)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.SGD(params, lr=0.5)
    ids = torch.randint(4, 500, (2, 12))
    for _ in range(3):
        loss = adapters.model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = {n: adapters.state(n) for n in NAMES}
    assert any(not torch.equal(before[target][k], after[target][k]) for k in before[target])
    for other in set(NAMES) - {target}:
        assert all(torch.equal(before[other][k], after[other][k]) for k in before[other])
    for n, p in _base_state(adapters).items():
        assert torch.equal(p, base[n]), f"base weight {n} moved"


def test_fresh_adapters_depend_only_on_their_seed_and_name():
    torch.manual_seed(1)
    first = _adapters()
    first.add("extra", LoraSettings())
    torch.manual_seed(2)
    rng = torch.get_rng_state()
    again = TaskAdapters(load_model("tiny-llama"), NAMES[::-1], LoraSettings())  # other order
    again.add("extra", LoraSettings())
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left as it was
    for name in [*NAMES, "extra"]:
        a, b = first.state(name), again.state(name)
        assert all(torch.equal(a[k], b[k]) for k in a)
    other = TaskAdapters(load_model("tiny-llama"), NAMES, LoraSettings(), seed=1)
    a_keys = [k for k in first.state(NAMES[0]) if "lora_A" in k]
    assert a_keys and not any(torch.equal(first.state(NAMES[0])[k], other.state(NAMES[0])[k])
                              for k in a_keys)
    assert not torch.equal(first.state(NAMES[0])[a_keys[0]], first.state(NAMES[1])[a_keys[0]])


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-phi", "tiny-qwen2", "tiny-mistral",
                                   "tiny-gemma"])
def test_family_targets_get_adapters(model):
    adapters = _adapters(model, rank=4)
    family = adapters.loaded.family
    wrapped = {n.split(".")[-1] for n, m in adapters.model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == set(default_lora_targets(family))
    assert all(adapters.adapter_nbytes(n) > 0 for n in NAMES)


def test_save_and_load_reproduce_logits(tmp_path):
    adapters = _adapters()
    with torch.no_grad():
        for name in NAMES:
            for p in adapters.parameters(name):
                p.normal_(0, 0.2)
    ids = torch.randint(4, 500, (1, 16))
    expected = {n: _logits(adapters, n, ids) for n in NAMES}
    adapters.save(tmp_path)
    fresh = _adapters()
    assert not torch.allclose(_logits(fresh, NAMES[0], ids), expected[NAMES[0]])
    fresh.load(tmp_path)
    for name in NAMES:
        torch.testing.assert_close(_logits(fresh, name, ids), expected[name])
    assert (tmp_path / NAMES[1] / "adapter_config.json").exists()


def test_load_missing_adapter_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="content_generation"):
        _adapters().load(tmp_path)


def test_merged_copy_matches_adapter_and_leaves_shared_base():
    adapters = _adapters()
    with torch.no_grad():
        for p in adapters.parameters(NAMES[2]):
            p.normal_(0, 0.2)
    adapters.model.eval()
    ids = torch.randint(4, 500, (1, 10))
    expected = _logits(adapters, NAMES[2], ids)
    merged = adapters.merged(NAMES[2])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(_logits(adapters, NAMES[2], ids), expected)


def test_copy_from_and_shared_memory():
    adapters = _adapters()
    adapters.add("copy", LoraSettings(), copy_from=NAMES[0])
    a, b = adapters.state(NAMES[0]), adapters.state("copy")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert adapters.base_nbytes() > 4 * sum(adapters.adapter_nbytes(n) for n in adapters.names)


@pytest.mark.parametrize("field,value", [("rank", 0), ("alpha", 0.0), ("dropout", 1.0),
                                         ("target_modules", ())])
def test_bad_lora_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        LoraSettings(**{field: value})


def test_resize_keeps_the_update_up_and_truncates_it_down():
    adapters = _adapters(rank=8)
    with torch.no_grad():
        for p in adapters.parameters("content_generation"):
            p.normal_(0, 0.1)
    ids = torch.randint(0, 100, (1, 12))
    before = _logits(adapters, "content_generation", ids)
    other = _logits(adapters, "network_optimization", ids)
    base = _base_state(adapters)
    adapters.resize("content_generation", 16, torch.Generator().manual_seed(0))
    assert adapters.settings("content_generation").rank == 16
    assert adapters.settings("content_generation").alpha == 32.0  # alpha / rank kept
    torch.testing.assert_close(_logits(adapters, "content_generation", ids), before)
    small = adapters.adapter_nbytes("content_generation") // 16
    adapters.resize("content_generation", 1)
    assert adapters.adapter_nbytes("content_generation") == small
    assert not torch.allclose(_logits(adapters, "content_generation", ids), before)
    torch.testing.assert_close(_logits(adapters, "network_optimization", ids), other)
    for key, tensor in _base_state(adapters).items():
        assert torch.equal(tensor, base[key]), key
