"""LLM policy: acts for all agents of a text-mode Oasis env in one batched generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from sandbox_rl.agents.generation import Completion, GenerationRequest, generate_batch
from sandbox_rl.agents.kv_cache import KVCacheSettings, PrefixCacheStore, cache_factory
from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import ModelSettings, load_model
from sandbox_rl.agents.task_specs import TaskSpec, spec
from sandbox_rl.enums import TaskType
from sandbox_rl.envs.text_space import MAX_COMPLETION_CHARS, printable


def build_task_adapters(model: str = "embedded", lora: LoraSettings = LoraSettings(),
                        settings: ModelSettings = ModelSettings()) -> TaskAdapters:
    """One LoRA adapter per task (named by the ``TaskType`` values) on one shared base."""
    return TaskAdapters(load_model(model, settings), [t.value for t in TaskType], lora)


@dataclass
class LLMPolicy:
    """``policy(observations) -> actions`` for the text mode of ``oasis_v0``.

    Each agent's prompt is its task spec's chat prompt around the env's text observation; all
    prompts go through one ``generate`` call, each row through the agent's adapter
    (``adapter_for[agent]``, default the agent's own name). ``kv_cache`` switches generation to
    a compressed (quantised) KV cache. Completions are cut to the env's action length and
    charset. ``last_completions`` keeps the raw completions of the last call.

    ``prefix_cache``: reuse the keys and values of each task's fixed system turn, per adapter;
    a cache is recomputed when its adapter's weights change (adapters may be trained between
    calls). ``prefix_cache_dir``: also persist them there (default: memory only).
    """

    adapters: TaskAdapters
    adapter_for: Mapping[str, str] = field(default_factory=dict)
    kv_cache: KVCacheSettings | None = None
    max_chars: int = MAX_COMPLETION_CHARS
    seed: int = 0
    specs: Callable[[str], TaskSpec] = spec
    last_completions: dict[str, Completion] = field(default_factory=dict)
    _calls: int = 0
    prefix_cache: bool = True
    prefix_cache_dir: str | Path | None = None
    _store: PrefixCacheStore | None = field(default=None, repr=False)

    def requests(self, observations: Mapping[str, str]) -> list[GenerationRequest]:
        tok = self.adapters.tokenizer
        return [self.specs(a).request(tok, obs, self.adapter_for.get(a, a))
                for a, obs in observations.items()]

    def __call__(self, observations: Mapping[str, str]) -> dict[str, str]:
        completions = generate_batch(self.adapters.model, self.adapters.tokenizer,
                                     self.requests(observations), self._cache_factory(),
                                     seed=self.seed + self._calls,
                                     prefix_caches=self.prefix_caches())
        self._calls += 1
        self.last_completions = dict(zip(observations, completions))
        return {a: to_action_text(self.specs(a).answer(observations[a], c.text), self.max_chars)
                for a, c in self.last_completions.items()}

    def prefix_caches(self) -> PrefixCacheStore | None:
        """The store of this policy's prefix caches (``None`` when switched off)."""
        if not self.prefix_cache:
            return None
        if self._store is None or self._store.model is not self.adapters.model:
            self._store = PrefixCacheStore(self.adapters.model, self.prefix_cache_dir,
                                           persist=self.prefix_cache_dir is not None)
        return self._store

    def _cache_factory(self) -> Callable[[], object] | None:
        return cache_factory(self.adapters.model.config, self.kv_cache)


def to_action_text(text: str, max_chars: int) -> str:
    """A completion as a valid ``Text`` action: printable ASCII, at most ``max_chars``."""
    return printable(text.strip(), max_chars)


def env_action(answer: str) -> str | None:
    """The text action the env receives for a text answer; None for an empty one, which the
    env's ``Text`` space refuses: the task then does its no-op, as for any answer that does not
    parse. Every counterfactual score of a text answer goes through this."""
    return to_action_text(answer, MAX_COMPLETION_CHARS) or None
