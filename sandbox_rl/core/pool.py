"""The model pool: base models, their task adapters, and the members each task routes among.

Tasks that name the same model share one loaded base; each task owns ``model_pool_size``
members, each a PEFT adapter on that base (``<task>__<k>``) with its own decoding temperature.
Member 0 starts as PEFT initialises an adapter (the base model's behaviour); the others start
as seeded perturbations of it, so the pool explores from the first step.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from sandbox_rl.agents.kv_cache import KVCacheSettings
from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import LoadedModel, ModelNotAvailableError, ModelSettings, load_model
from sandbox_rl.agents.task_specs import TaskSpec, spec
from sandbox_rl.enums import TaskType
from sandbox_rl.validation import InvalidValue

log = logging.getLogger(__name__)

RECENT = 20  # rewards per member that "recent performance" averages over
# Decoding temperatures of the initial pool: member 0 decodes as its task spec says.
TEMPERATURE_STEPS = (1.0, 0.5, 1.5, 0.75, 1.25)


@dataclass
class Member:
    """One routable (adapter, decoding) pair of a task."""

    task: TaskType
    index: int
    adapter: str | None  # None: the base model (LoRA disabled)
    temperature: float
    generation: int = 0  # times this slot was replaced by a copy of a better member
    pulls: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    total_reward: float = 0.0

    @property
    def mean(self) -> float:
        return sum(self.recent) / len(self.recent) if self.recent else 0.0

    def record(self, reward: float) -> None:
        self.pulls += 1
        self.recent.append(float(reward))
        self.total_reward += float(reward)

    def reset_stats(self) -> None:
        self.pulls, self.total_reward = 0, 0.0
        self.recent.clear()

    def stats(self) -> dict:
        return {"adapter": self.adapter, "temperature": round(self.temperature, 4),
                "pulls": self.pulls, "recent_mean": round(self.mean, 4),
                "generation": self.generation}

    def to_json(self) -> dict:
        return {"index": self.index, "adapter": self.adapter, "temperature": self.temperature,
                "generation": self.generation, "pulls": self.pulls, "recent": list(self.recent),
                "total_reward": self.total_reward}

    def load_json(self, data: dict) -> None:
        self.temperature = float(data["temperature"])
        self.generation = int(data["generation"])
        self.pulls = int(data["pulls"])
        self.recent = deque((float(r) for r in data["recent"]), maxlen=RECENT)
        self.total_reward = float(data["total_reward"])


@dataclass
class ModelGroup:
    """One loaded base model and the adapters of every task that runs on it."""

    name: str  # the model loaded (the distribution's name, or the fallback)
    loaded: LoadedModel
    adapters: TaskAdapters | None  # None when LoRA is disabled
    tasks: list[TaskType]
    kv_cache: KVCacheSettings | None

    @property
    def tokenizer(self):
        return self.loaded.tokenizer

    @property
    def model(self):
        return self.adapters.model if self.adapters is not None else self.loaded.model


def slug(model_name: str) -> str:
    """A file and key name for a model name (Hugging Face ids contain '/')."""
    return model_name.replace("/", "--")


def adapter_name(task: TaskType, index: int) -> str:
    return f"{task.value}__{index}"


def member_spec(member: Member) -> TaskSpec:
    """The task's spec with this member's decoding temperature (greedy specs stay greedy when
    the member's factor is 1, and sample otherwise)."""
    base = spec(member.task)
    temperature = base.sampling.temperature * member.temperature
    if base.sampling.temperature == 0 and member.temperature != 1.0:
        temperature = 0.3 * member.temperature  # a greedy task's explorers sample gently
    return replace(base, sampling=replace(base.sampling, temperature=round(temperature, 4)))


def resolve_models(distribution: dict[TaskType, str], fallback: str | None,
                   settings: ModelSettings) -> dict[str, tuple[LoadedModel, list[TaskType]]]:
    """Load each distinct model once; a model absent from this machine is replaced by
    ``fallback`` with a warning (tasks falling back share one copy)."""
    loaded: dict[str, LoadedModel] = {}
    tasks_of: dict[str, list[TaskType]] = {}
    for task in TaskType:
        name = distribution[task]
        if name not in loaded:
            try:
                loaded[name] = load_model(name, settings)
            except ModelNotAvailableError as err:
                if fallback is None or fallback == name:
                    raise
                log.warning("%s; %s runs on %r instead (fallback_model=None makes this an "
                            "error)", err, task.value, fallback)
                name = fallback
                if name not in loaded:
                    loaded[name] = load_model(name, settings)
        tasks_of.setdefault(name, []).append(task)
    return {name: (loaded[name], tasks) for name, tasks in tasks_of.items()}


def build_pool(distribution: dict[TaskType, str], pool_size: int, lora: LoraSettings | None,
               kv_cache: KVCacheSettings | None, fallback: str | None, settings: ModelSettings,
               seed: int, adapters_dir: str | None = None
               ) -> tuple[dict[str, ModelGroup], dict[TaskType, list[Member]]]:
    """Every task's members, as adapters on its (shared) base model; with ``adapters_dir``
    (trained task adapters, one sub-folder per task as ``sandbox-rl train agents`` saves them)
    every member of a task starts from its trained adapter, the others perturbed as usual."""
    folders = trained_adapter_folders(adapters_dir, distribution) if adapters_dir else {}
    groups: dict[str, ModelGroup] = {}
    members: dict[TaskType, list[Member]] = {}
    for name, (loaded, tasks) in resolve_models(distribution, fallback, settings).items():
        names = [adapter_name(t, k) for t in tasks for k in range(pool_size)]
        adapters = TaskAdapters(loaded, names, lora, seed) if lora is not None else None
        groups[name] = ModelGroup(name, loaded, adapters, tasks, fit_kv_cache(kv_cache, loaded))
        for task in tasks:
            members[task] = [Member(task, k, adapter_name(task, k) if lora is not None else None,
                                    TEMPERATURE_STEPS[k % len(TEMPERATURE_STEPS)])
                             for k in range(pool_size)]
            if adapters is not None:
                for member in members[task] if task in folders else []:
                    adapters.load_from(folders[task], member.adapter)
                for member in members[task][1:]:
                    perturb(adapters, member.adapter, scale=0.02,
                            generator=member_generator(seed, member))
    return groups, members


def trained_adapter_folders(adapters_dir: str, tasks) -> dict[TaskType, Path]:
    """Each task's saved adapter under ``adapters_dir`` (a ``train agents`` run folder or its
    ``adapters/``); ValueError naming ``adapters_dir`` and the task when one is missing."""
    root = Path(adapters_dir)
    if (root / "adapters").is_dir():
        root = root / "adapters"
    found = {}
    for task in tasks:
        folder = root / TaskType.parse(task).value
        if not (folder / "adapter_config.json").is_file():
            raise InvalidValue("adapters_dir", str(adapters_dir),
                               reason=f"no trained adapter for task "
                                      f"{TaskType.parse(task).value!r} (expected "
                                      f"{folder / 'adapter_config.json'})")
        found[TaskType.parse(task)] = folder
    return found


def fit_kv_cache(settings: KVCacheSettings | None, loaded: LoadedModel) -> KVCacheSettings | None:
    """The settings with a quantisation group that divides one token's cached states (tiny
    models hold fewer than 64 per token)."""
    if settings is None or settings.backend == "fp8":
        return settings
    config = loaded.model.config.get_text_config(decoder=True)
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return replace(settings, q_group_size=math.gcd(settings.q_group_size, heads * head_dim))


def member_generator(seed: int, member: Member, salt: int = 0) -> torch.Generator:
    """A generator distinct per (seed, task, slot, generation, salt)."""
    task = list(TaskType).index(member.task)
    key = (((seed * 8 + task) * 64 + member.index) * 1024 + member.generation) * 16 + salt
    return torch.Generator().manual_seed(key % (2**63))


@torch.no_grad()
def perturb(adapters: TaskAdapters, name: str, scale: float, generator: torch.Generator) -> None:
    """Add seeded Gaussian noise to an adapter: ``scale`` times each tensor's RMS (or, for a
    tensor still at zero such as a fresh LoRA B, ``scale`` / sqrt(fan-in) of its A partner)."""
    for param in adapters.parameters(name):
        rms = float(param.float().pow(2).mean().sqrt())
        std = scale * (rms if rms > 0 else 1.0 / math.sqrt(max(param.shape[-1], 1)))
        noise = torch.randn(param.shape, generator=generator, dtype=torch.float32) * std
        param.add_(noise.to(param.dtype).to(param.device))
