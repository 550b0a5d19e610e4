"""Task LoRA adapters with PEFT: several named adapters on one shared base model.

One adapter per task (or per pool member) on a single ``PeftModel``, so five tasks cost one
base in memory and one forward pass per token when batched with ``adapter_names=``.
Adapters save and load in PEFT's own format.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from sandbox_rl.agents import answer_formats
from sandbox_rl.agents.models import LoadedModel, default_lora_targets
from sandbox_rl.seeding import derived_seed
from sandbox_rl.validation import Int, require, shorten


@dataclass(frozen=True)
class LoraSettings:
    """Rank, scaling, dropout and target modules of one adapter (None: the family's default)."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    target_modules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Python ints (bools too, as before the checks were shared); the numbers are compared
        # as given (a string is a TypeError). The messages say "lora rank", not "rank".
        rank = Int(1, 1024, numpy=False, bools=True)
        _lora_require(rank.accepts(self.rank), "rank", self.rank, rank.expected)
        _lora_require(self.alpha > 0, "alpha", self.alpha, "> 0")
        _lora_require(0 <= self.dropout < 1, "dropout", self.dropout, "in [0, 1)")
        _lora_require(self.target_modules is None or self.target_modules, "target_modules",
                      self.target_modules, "module names or None")

    def peft_config(self, family: str) -> LoraConfig:
        targets = self.target_modules or default_lora_targets(family)
        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(targets), task_type="CAUSAL_LM")


def _lora_require(ok: object, field: str, value: object, expected: str) -> None:
    require(ok, field, value, expected,
            message=f"invalid lora {field}={shorten(value)}: expected {expected}")


class TaskAdapters:
    """Named LoRA adapters sharing one base model.

    ``settings`` is one ``LoraSettings`` for every adapter or a mapping name -> settings.
    New adapters start as PEFT initialises them (B = 0: the base model's behaviour; A random),
    A drawn from torch's RNG seeded by ``(seed, name)`` in a fork: an adapter's start depends
    only on its seed and name, not on the global RNG or on the adapters made before it.
    """

    def __init__(self, loaded: LoadedModel, names: Sequence[str],
                 settings: LoraSettings | Mapping[str, LoraSettings] = LoraSettings(),
                 seed: int = 0) -> None:
        if not names:
            raise ValueError("TaskAdapters needs at least one adapter name")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate adapter names in {list(names)}")
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.seed = seed
        self._settings = {n: settings[n] if isinstance(settings, Mapping) else settings
                          for n in names}
        first, *rest = names
        with self._seeded_init(first):
            self.model: PeftModel = get_peft_model(
                loaded.model, self._settings[first].peft_config(loaded.family),
                adapter_name=first)
        for name in rest:
            self.add(name, self._settings[name])
        self.model.eval()

    @property
    def names(self) -> list[str]:
        return list(self._settings)

    def settings(self, name: str) -> LoraSettings:
        return self._settings[name]

    def add(self, name: str, settings: LoraSettings, copy_from: str | None = None) -> None:
        """Add an adapter; ``copy_from`` starts it from another adapter's weights (same rank)."""
        if name in self.model.peft_config:
            raise ValueError(f"adapter {name!r} already exists")
        with self._seeded_init(name):
            self.model.add_adapter(name, settings.peft_config(self.loaded.family))
        self._settings[name] = settings
        if copy_from is not None:
            self.load_state(name, self.state(copy_from))

    @contextmanager
    def _seeded_init(self, name: str) -> Iterator[None]:
        """A fork of torch's CPU RNG (PEFT creates the LoRA layers on the CPU, then moves
        them) seeded by ``(seed, name)``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(self.seed, name))
            yield

    def remove(self, name: str) -> None:
        self.model.delete_adapter(name)
        del self._settings[name]

    def _named(self, name: str) -> dict[str, torch.nn.Parameter]:
        """One adapter's LoRA parameters, keyed by their names without the adapter name."""
        tag = f".{name}."
        return {n.replace(tag, "."): p for n, p in self.model.named_parameters()
                if "lora_" in n and tag in n}

    def parameters(self, name: str) -> list[torch.nn.Parameter]:
        """The trainable LoRA parameters of one adapter."""
        return list(self._named(name).values())

    def state(self, name: str) -> dict[str, torch.Tensor]:
        """A detached copy of one adapter's weights, keyed without the adapter name."""
        return {k: p.detach().clone() for k, p in self._named(name).items()}

    def load_state(self, name: str, state: Mapping[str, torch.Tensor]) -> None:
        params = self._named(name)
        if params.keys() != state.keys():
            raise ValueError(f"adapter {name!r}: state keys do not match its modules")
        with torch.no_grad():
            for key, p in params.items():
                if p.shape != state[key].shape:
                    raise ValueError(f"adapter {name!r}: {key} has shape {tuple(p.shape)}, "
                                     f"state has {tuple(state[key].shape)}")
                p.copy_(state[key])

    def save(self, directory: str | Path) -> Path:
        """Save every adapter in PEFT's format (one sub-folder per adapter name)."""
        directory = Path(directory)
        self.model.save_pretrained(str(directory), selected_adapters=self.names)
        answer_formats.record(directory, self.names)
        return directory

    def load(self, directory: str | Path, names: Sequence[str] | None = None) -> None:
        """Replace adapters' weights with those saved by :meth:`save` (PEFT format)."""
        directory = Path(directory)
        for name in names or self.names:
            self.load_from(directory if name == "default" else directory / name, name)

    def load_from(self, folder: str | Path, name: str) -> None:
        """Load the PEFT adapter saved in ``folder`` (any adapter's, e.g. a trained task
        adapter into a pool member) as adapter ``name``, with the saved rank and scaling."""
        folder = Path(folder)
        if not (folder / "adapter_config.json").exists():
            raise FileNotFoundError(f"no PEFT adapter in {folder} (for {name!r})")
        answer_formats.warn_if_stale(folder)
        if name in self.model.peft_config:
            self.model.delete_adapter(name)
        self.model.load_adapter(str(folder), adapter_name=name)
        config = self.model.peft_config[name]
        self._settings[name] = LoraSettings(config.r, float(config.lora_alpha),
                                            float(config.lora_dropout),
                                            tuple(sorted(config.target_modules)))
        self.model.eval()

    @torch.no_grad()
    def resize(self, name: str, rank: int, generator: torch.Generator | None = None) -> None:
        """Change an adapter's rank, keeping its ``alpha / rank`` scale.

        Lower: each layer's update ``B A`` becomes its best rank-``rank`` approximation
        (truncated SVD). Higher: the update is kept exactly; new rows of A start like a fresh
        LoRA A (Kaiming-uniform, seeded) and new columns of B at zero, so they can learn.
        """
        old = self._settings[name]
        if rank == old.rank:
            return
        new = LoraSettings(rank, old.alpha * rank / old.rank, old.dropout, old.target_modules)
        updates = {}
        for key, a in self._named(name).items():
            if ".lora_A." in key or key.endswith("lora_A.weight"):
                b = self._named(name)[key.replace("lora_A", "lora_B")]
                updates[key] = _resized_factors(b.float(), a.float(), rank, generator)
        dtype = next(iter(self._named(name).values())).dtype
        self.remove(name)
        self.add(name, new)
        params = self._named(name)
        for key, (b, a) in updates.items():
            params[key].copy_(a.to(dtype))
            params[key.replace("lora_A", "lora_B")].copy_(b.to(dtype))
        self.model.eval()

    def merged(self, name: str) -> torch.nn.Module:
        """A copy of the base model with one adapter merged in (the shared base is untouched)."""
        clone = copy.deepcopy(self.model)
        clone.set_adapter(name)
        return clone.merge_and_unload(adapter_names=[name])

    def adapter_nbytes(self, name: str) -> int:
        return sum(p.numel() * p.element_size() for p in self.parameters(name))

    def base_nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for n, p in self.model.named_parameters()
                   if "lora_" not in n)


def _resized_factors(b: torch.Tensor, a: torch.Tensor, rank: int,
                     generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """New (B, A) of ``rank`` for the product ``B A`` (the scale alpha/r stays the same)."""
    old = a.shape[0]
    if rank < old:
        u, s, vh = torch.linalg.svd(b @ a, full_matrices=False)
        root = s[:rank].sqrt()
        return u[:, :rank] * root, root[:, None] * vh[:rank]
    extra = torch.empty(rank - old, a.shape[1])
    bound = 1.0 / math.sqrt(a.shape[1])  # kaiming_uniform(a=sqrt(5)) bound, as PEFT inits A
    extra.uniform_(-bound, bound, generator=generator)
    return (torch.cat([b, torch.zeros(b.shape[0], rank - old)], dim=1),
            torch.cat([a, extra.to(a.device)], dim=0))
