"""``SelfEvolvingConfig``: the guide's configuration table, validated at construction."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import torch

from sandbox_rl.enums import EvolutionStrategy, TaskType
from sandbox_rl.validation import Custom, Flag, Int, Real, check_fields, require

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
        check_fields(self, {
            "evolution_strategy": Custom(_enum(EvolutionStrategy)),
            **dict.fromkeys(("enable_lora", "enable_kv_cache_compression",
                             "enable_online_adaptation", "enable_monitoring"), Flag(numpy=False)),
            "lora_rank": Int(1, 256, numpy=False),
            "lora_alpha": Real(0, None, open_low=True, numpy=False),
            "lora_dropout": Real(0, 1, open_high=True, numpy=False),
            "adaptation_learning_rate": Real(0, 1, open_low=True, numpy=False),
            "evolution_interval": Int(1, None, numpy=False, text="an integer in [1, inf]"),
            "performance_threshold": Real(0, 1, numpy=False),
            "model_pool_size": Int(1, 16, numpy=False),
            "task_distribution": Custom(_distribution),
            "num_users": Int(50, 10_000_000, numpy=False),
            "seed": Int(0, 2**63 - 1, numpy=False),
        })
        require(self.fallback_model is None or isinstance(self.fallback_model, str),
                "fallback_model", self.fallback_model, "a model name or None")
        require(isinstance(self.log_dir, (str, os.PathLike)), "log_dir", self.log_dir, "a path")
        if self.adapters_dir is not None:
            require(isinstance(self.adapters_dir, (str, os.PathLike)) and str(self.adapters_dir),
                    "adapters_dir", self.adapters_dir, "a folder path or None")
            self.adapters_dir = str(self.adapters_dir)
        check_fields(self, {"device": Custom(_device)})

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
# The checks the typed ranges of sandbox_rl.validation do not express (through its ``Custom``):
# each returns the normalised value or raises ValueError with what was expected.

def _enum(kind):
    def validate(value):
        try:
            return kind(value.value if isinstance(value, kind) else str(value).strip().lower())
        except ValueError:
            raise ValueError("one of " + ", ".join(m.value for m in kind)) from None
    return validate


def _device(value):
    """None, or a torch device present on this machine ('cpu', 'cuda', 'cuda:1', 'mps')."""
    if value is None:
        return None
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
