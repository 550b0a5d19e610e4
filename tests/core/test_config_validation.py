"""``SelfEvolvingConfig`` refuses values that would only fail later (in torch, at the first
step): non-finite numbers and devices this machine does not have."""

from __future__ import annotations

import math

import pytest

from sandbox_rl.core.config import SelfEvolvingConfig, present_devices


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 0.0, -1.0, "16", True, None])
def test_lora_alpha_must_be_a_finite_positive_number(value) -> None:
    with pytest.raises(ValueError, match=r"invalid lora_alpha=.*: expected a finite number > 0"):
        SelfEvolvingConfig(lora_alpha=value)


@pytest.mark.parametrize(("name", "value"), [
    ("adaptation_learning_rate", math.nan), ("lora_dropout", math.inf),
    ("performance_threshold", math.nan), ("lora_rank", math.inf),
])
def test_other_numbers_refuse_nan_and_inf(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"invalid {name}="):
        SelfEvolvingConfig(**{name: value})


def test_finite_numbers_still_pass() -> None:
    config = SelfEvolvingConfig(lora_alpha=32, adaptation_learning_rate=1e-3)
    assert config.lora_alpha == 32.0 and isinstance(config.lora_alpha, float)


def _absent_cuda() -> str:
    import torch

    return f"cuda:{max(torch.cuda.device_count(), 7)}"


@pytest.mark.parametrize("device", ["nonsense", "cuda:7", "gpu", "cuda:-1", "meta", "", "  ",
                                    "cpu:x", 0])
def test_a_device_not_present_names_it_and_what_is_present(device) -> None:
    if device == "cuda:7":
        device = _absent_cuda()
    present = present_devices()
    with pytest.raises(ValueError) as info:
        SelfEvolvingConfig(device=device)
    message = str(info.value)
    assert message.startswith(f"invalid device={device!r}: expected"), message
    assert f"({', '.join(present)})" in message


def test_present_devices_pass() -> None:
    assert SelfEvolvingConfig(device=None).device is None
    assert SelfEvolvingConfig(device="cpu").device == "cpu"
    for device in present_devices():
        assert SelfEvolvingConfig(device=device).device == device
    if any(d.startswith("cuda") for d in present_devices()):
        assert SelfEvolvingConfig(device="cuda").device == "cuda"
