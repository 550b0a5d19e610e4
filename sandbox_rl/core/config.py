"""``SelfEvolvingConfig``: the guide's configuration table, validated at construction."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from sandbox_rl.enums import EvolutionStrategy, TaskType
from sandbox_rl.envs.config import shorten

# The model every task runs on unless ``task_distribution`` names another. Tests and quick
# experiments point it at a tiny random model without touching code that follows the guide.
DEFAULT_MODEL_ENV = "SANDBOX_RL_DEFAULT_MODEL"


def default_model() -> str:
    return os.environ.get(DEFAULT_MODEL_ENV) or "embedded"


def _default_distribution() -> dict[TaskType, str]:
    return {task: default_model() for task in TaskType}


@dataclass
class SelfEvolvingConfig:
    """Configuration of a self-evolving Oasis sandbox.

    The first twelve fields and their defaults are the user guide's table. ``task_distribution``
    maps tasks to model names (``"embedded"``, ``"tiny-llama"``, or a Hugging Face id found in the
    local cache); tasks it leaves out run on the default model (``embedded``, or
    ``$SANDBOX_RL_DEFAULT_MODEL``). A named model absent from the cache is replaced by
    ``fallback_model`` (default: the default model) with a logged warning (``None``: raise
    instead), so the guide's examples
    that name Mistral-7B or Phi-2 run offline.

    The world: ``num_users`` simulated users, seeded by ``seed``. ``log_dir`` receives the
    monitoring JSONL and TensorBoard scalars when ``enable_monitoring`` is on. ``device``: None
    runs the models on CUDA when present, else on the CPU; a named device must be present
    (``'cpu'``, ``'cuda'``, ``'cuda:1'``, ``'mps'``). ``adapters_dir``: start every task's
    pool from the adapters ``sandbox-rl train agents`` trained (its run folder or ``adapters/``).
    """

    evolution_strategy: EvolutionStrategy | str = EvolutionStrategy.MULTI_MODEL
    enable_lora: bool = True
    enable_kv_cache_compression: bool = True
    enable_online_adaptation: bool = True
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.1
    adaptation_learning_rate: float = 1e-4
    evolution_interval: int = 10
    performance_threshold: float = 0.7
    model_pool_size: int = 3
    enable_monitoring: bool = True
    task_distribution: Mapping[TaskType | str, str] = field(default_factory=_default_distribution)
    fallback_model: str | None = field(default_factory=default_model)
    num_users: int = 1000
    seed: int = 0
    log_dir: str = "runs/self_evolving_oasis"
    device: str | None = None
    adapters_dir: str | None = None

    def __post_init__(self) -> None:
        _check(self, "evolution_strategy", _enum(EvolutionStrategy))
        for name in ("enable_lora", "enable_kv_cache_compression", "enable_online_adaptation",
                     "enable_monitoring"):
            _check(self, name, _bool)
        _check(self, "lora_rank", _int(1, 256))
        _check(self, "lora_alpha", _float(0, None, open_low=True))
        _check(self, "lora_dropout", _float(0, 1, open_high=True))
        _check(self, "adaptation_learning_rate", _float(0, 1, open_low=True))
        _check(self, "evolution_interval", _int(1, None))
        _check(self, "performance_threshold", _float(0, 1))
        _check(self, "model_pool_size", _int(1, 16))
        _check(self, "task_distribution", _distribution)
        _check(self, "num_users", _int(50, 10_000_000))
        _check(self, "seed", _int(0, 2**63 - 1))
        if self.fallback_model is not None and not isinstance(self.fallback_model, str):
            raise ValueError(f"invalid fallback_model={self.fallback_model!r}: expected a model "
                             "name or None")
        if not isinstance(self.log_dir, (str, os.PathLike)):
            raise ValueError(f"invalid log_dir={self.log_dir!r}: expected a path")
        if self.adapters_dir is not None:
            if not isinstance(self.adapters_dir, (str, os.PathLike)) or not str(self.adapters_dir):
                raise ValueError(f"invalid adapters_dir={self.adapters_dir!r}: expected a folder "
                                 "path or None")
            self.adapters_dir = str(self.adapters_dir)
        _check(self, "device", _device)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (enums as their strings)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["evolution_strategy"] = self.evolution_strategy.value
        out["task_distribution"] = {t.value: m for t, m in self.task_distribution.items()}
        out["log_dir"] = str(self.log_dir)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SelfEvolvingConfig":
        unknown = set(data) - cls.field_names()
        if unknown:
            raise ValueError(f"unknown config field(s) {sorted(unknown)}")
        return cls(**data)


# ----------------------------------------------------------------------------- validators
# Each returns the normalised value or raises ValueError with what was expected.

def _check(config: SelfEvolvingConfig, name: str, validate) -> None:
    value = getattr(config, name)
    try:
        setattr(config, name, validate(value))
    except (TypeError, ValueError) as err:
        raise ValueError(f"invalid {name}={shorten(value)}: expected {err}") from None


def _enum(kind):
    def validate(value):
        try:
            return kind(value.value if isinstance(value, kind) else str(value).strip().lower())
        except ValueError:
            raise ValueError("one of " + ", ".join(m.value for m in kind)) from None
    return validate


def _bool(value):
    if not isinstance(value, bool):
        raise ValueError("True or False")
    return value


def _int(low: int, high: int | None):
    def validate(value):
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or value < low or (high is not None and value > high):
            raise ValueError(f"an integer in [{low}, {high if high is not None else 'inf'}]")
        return value
    return validate


def _float(low: float, high: float | None, open_low: bool = False, open_high: bool = False):
    def validate(value):
        if high is None:
            expected = f"a finite number {'>' if open_low else '>='} {low}"
        else:
            lo, hi = "(" if open_low else "[", ")" if open_high else "]"
            expected = f"a number in {lo}{low}, {high}{hi}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(expected)
        value = float(value)
        if not math.isfinite(value) or not (value > low if open_low else value >= low):
            raise ValueError(expected)
        if high is not None and not (value < high if open_high else value <= high):
            raise ValueError(expected)
        return value
    return validate


def _device(value):
    """None, or a torch device present on this machine ('cpu', 'cuda', 'cuda:1', 'mps')."""
    if value is None:
        return None
    import torch

    present = present_devices()
    expected = ("None (CUDA when present, else CPU) or a device present on this machine "
                f"({', '.join(present)})")
    if not isinstance(value, str):
        raise ValueError(expected)
    try:
        device = torch.device(value.strip())
    except (RuntimeError, ValueError):
        raise ValueError(expected) from None
    # "cuda" (no index) names the current CUDA device: present when any is.
    if str(device) not in present and not (
            device.index is None and any(p.split(":")[0] == device.type for p in present)):
        raise ValueError(expected)
    return str(device)


def present_devices() -> list[str]:
    """The torch devices of this machine: 'cpu', then 'cuda:N' and 'mps' where present."""
    import torch

    devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def _distribution(value):
    if not isinstance(value, Mapping):
        raise ValueError("a mapping TaskType -> model name")
    out = _default_distribution()
    for task, model in value.items():
        try:
            task = TaskType.parse(task)
        except ValueError as err:
            raise ValueError(f"TaskType keys ({err})") from None
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"a model name for {task.value}, got {model!r}")
        out[task] = model.strip()
    return out
