"""TRL PPO on one task adapter of a shared multi-adapter ``PeftModel``, plus online adaptation.

:class:`PPOLearner` runs ``trl.experimental.ppo.PPOTrainer`` (trl 1.12.0, the last release with it)
on the ``TaskAdapters`` model itself; no copy of the model is made. How the pieces fit TRL:

- **One adapter of many.** TRL treats a ``PeftModel`` policy as "train the active adapter, use the
  adapter-disabled model as the reference policy". So each update activates the chosen adapter
  with ``set_adapter``, leaves only that adapter's LoRA parameters with ``requires_grad`` and gives
  TRL an optimiser over those parameters alone (and the value head): the base and the other
  adapters are never in an optimiser, so they stay bit-identical. The KL penalty is therefore to
  the base model, as in TRL's own PEFT recipe. Afterwards the active adapter, every
  ``requires_grad`` flag, the dropout probabilities (TRL zeroes them so that rollout and training
  log-probabilities agree), the generation config (TRL overwrites ``eos_token_id``) and the
  train/eval mode are put back. Training runs PEFT's normal forward; an update inside
  ``agents.fused_lora.fused_adapters`` (which replaces layer forwards) is refused.
- **The reward "model".** TRL scores a rollout with ``get_reward(model, query_response, ...)``:
  ``model.score(getattr(model, model.base_model_prefix)(...).hidden_states[-1])`` read at the
  completion's last token. :class:`_RewardModel` is the thinnest module with that shape: its
  "backbone" splits each row into query and completion, maps the query back to its prompt index
  by its token ids, decodes the completion and calls ``reward_fn(indices, texts)`` (the caller's
  counterfactual step of the simulation); the reward is broadcast over the sequence and ``score``
  is the identity. Queries are padded to one fixed length (the longest prompt of the update) so
  the query/completion boundary is known without TRL passing it. Identical prompt texts are
  indistinguishable by tokens; they are scored with the index of their first occurrence.
- **Padding.** TRL finds padding by value (``ids == pad_token_id``). SmolLM2 pads with its
  ``<|im_end|>``, which ends every ChatML turn of a prompt and is the stop token, so PPO uses a
  copy of the tokenizer whose pad is a token that no prompt contains (the pad if it qualifies,
  else the unknown token).
- **The value model.** TRL needs a critic with a ``backbone`` and a ``score`` head. It is a linear
  head per adapter (hidden size + 1 parameters, zero-initialised) on the last hidden state of the
  shared base with every adapter disabled, run without gradient: no second copy of the 135M
  model, no stored activations for the critic's trunk and no value gradient pulling the task
  adapter. The price is one extra adapter-free forward per rollout batch and per mini-batch.
- **Optimiser state.** One ``AdamW`` per adapter (and its value head), created on first use and
  handed to every later ``PPOTrainer`` of that adapter, so updates continue its moments.
  :meth:`PPOLearner.optimizer_state` flattens it (and the value head) into named tensors for
  safetensors.
- **Group baseline (``samples_per_prompt`` > 1).** Each prompt is sampled k times in the same
  PPO batch and each rollout's reward is taken relative to the mean reward of its prompt's k
  rollouts (the per-prompt baseline of RLOO/GRPO, here inside PPO). A task's reward level varies
  far more between situations (worlds, hours) than between answers to one situation; with one
  sample per prompt the advantage is mostly "this prompt was easy", which a policy can fit to
  the training worlds' prompts without learning which answer is better. The centred reward
  needs no learned critic, so the value model is then a constant (a bias-only head on zero
  features; TRL still requires one) and the adapter-free critic forward is skipped. TRL shuffles
  its dataloader, which would split groups across batches: the rows are laid out group by group
  (groups in a seeded random order) and read without shuffling, each batch a whole number of
  groups.
- **Closed-set answers.** Given each prompt's ``Choices`` (``update``'s ``choices``), rollouts
  decode within them, as the task's proposals, validation and evaluation do: TRL's generation
  takes no logits processor, so ``generate`` is wrapped for the update (:class:`_ChoiceRollouts`),
  and TRL's old log-probabilities are the model's own at the temperature.
- **Randomness.** TRL seeds the global torch RNG and shuffles with NumPy's global RNG; both are
  seeded per update from ``(settings.seed, adapter, update count)`` and restored afterwards.

:meth:`PPOLearner.supervised_update` is the strategies' expert-iteration step (online
adaptation, ``gradient_based``): a few AdamW steps of the completion-only cross-entropy on
winning answers. Not TRL: a couple of steps on a handful of answers, where building a trainer
would cost more than the step.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import math
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from peft.tuners.lora.layer import Linear as LoraLinear
from torch import nn
from torch.utils.data import DataLoader
from transformers import (DataCollatorWithPadding, LogitsProcessor, LogitsProcessorList,
                          PrinterCallback, ProgressCallback)

from sandbox_rl.agents.choices import Choices, ChoiceState
from sandbox_rl.agents.generation import constrain
from sandbox_rl.seeding import derived_seed
from sandbox_rl.validation import Int, Real, check_fields, require

if TYPE_CHECKING:
    from sandbox_rl.agents.lora import TaskAdapters

RewardFn = Callable[[Sequence[int], Sequence[str]], Sequence[float]]
_HEAD = "value_head"
_SLOTS = ("exp_avg", "exp_avg_sq", "step")  # AdamW's state of a parameter


@dataclass(frozen=True)
class PPOSettings:
    """Hyper-parameters of one PPO update.

    Each update samples ``rollouts_per_update`` completions per PPO batch (prompts are cycled to
    fill whole batches, so every prompt is used at least once) and takes ``ppo_epochs`` passes of
    ``rollouts_per_update // mini_batch_size`` optimiser steps over each batch. With
    ``samples_per_prompt`` k > 1 a batch holds ``rollouts_per_update // k`` prompts, each
    sampled k times, and rewards are centred on each prompt's mean (no learned critic).
    """

    learning_rate: float = 1e-4
    rollouts_per_update: int = 8
    mini_batch_size: int = 4
    ppo_epochs: int = 1
    kl_coef: float = 0.05
    temperature: float = 0.7
    max_new_tokens: int = 48
    seed: int = 0
    samples_per_prompt: int = 1

    def __post_init__(self) -> None:
        # Python ints and floats, not bools; checked, not normalised (the settings are frozen).
        positive, natural = Real(0, open_low=True, numpy=False), Real(0, numpy=False)
        check_fields(self, {"learning_rate": positive, "kl_coef": natural,
                            "temperature": positive}, normalise=False)
        rollouts = self.rollouts_per_update
        Int(2, numpy=False).check("rollouts_per_update", rollouts)  # whitening needs two samples
        Int(1, numpy=False).check("mini_batch_size", self.mini_batch_size)
        require(rollouts % self.mini_batch_size == 0, "mini_batch_size", self.mini_batch_size,
                reason=f"it must divide rollouts_per_update={rollouts}")
        Int(1, numpy=False).check("samples_per_prompt", self.samples_per_prompt)
        require(rollouts % self.samples_per_prompt == 0, "samples_per_prompt",
                self.samples_per_prompt, reason=f"it must divide rollouts_per_update={rollouts}")
        check_fields(self, {"ppo_epochs": Int(1, numpy=False),
                            "max_new_tokens": Int(1, 4096, numpy=False),
                            "seed": Int(0, numpy=False)}, normalise=False)


@dataclass(frozen=True)
class PPOStats:
    """What one :meth:`PPOLearner.update` did (losses and KL averaged over its PPO batches)."""

    mean_reward: float  # of reward_fn on the sampled completions, before centring or KL
    kl: float  # summed over completion tokens, policy vs base (adapter disabled)
    policy_loss: float
    value_loss: float
    optimizer_steps: int
    rollouts: int
    seconds: float


class _Hidden(NamedTuple):
    hidden_states: tuple[torch.Tensor, ...]


class _RewardBackbone(nn.Module):
    """Calls ``reward_fn`` on the decoded completions of a batch of query-completion rows."""

    def __init__(self, queries: dict[tuple[int, ...], int], context_length: int, tokenizer,
                 reward_fn: RewardFn, centred: bool = False) -> None:
        super().__init__()
        self.queries, self.context_length = queries, context_length
        self.tokenizer, self.reward_fn, self.centred = tokenizer, reward_fn, centred
        self.rewards: list[float] = []  # as reward_fn gave them

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_) -> _Hidden:
        cut = self.context_length
        indices, texts = [], []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            indices.append(_prompt_index(self.queries, ids[:cut], mask[:cut]))
            completion = [t for t, m in zip(ids[cut:], mask[cut:]) if m]
            texts.append(self.tokenizer.decode(completion, skip_special_tokens=True))
        rewards = _checked_rewards(self.reward_fn(indices, texts), len(texts))
        self.rewards.extend(rewards)
        if self.centred:  # each relative to its prompt's mean in this batch (whole groups)
            means = {i: float(np.mean([r for j, r in zip(indices, rewards) if j == i]))
                     for i in set(indices)}
            rewards = [r - means[i] for i, r in zip(indices, rewards)]
        scores = torch.tensor(rewards, dtype=torch.float32, device=input_ids.device)
        return _Hidden((scores[:, None, None].expand(-1, input_ids.shape[1], 1),))


class _RewardModel(nn.Module):
    base_model_prefix = "backbone"

    def __init__(self, backbone: _RewardBackbone) -> None:
        super().__init__()
        self.backbone, self.score = backbone, nn.Identity()


class _FrozenBase(nn.Module):
    """The shared base model's body with every adapter disabled, run without gradient."""

    def __init__(self, peft_model) -> None:
        super().__init__()
        # Not a registered submodule: the value model's parameters must be its head alone.
        object.__setattr__(self, "peft_model", peft_model)

    def forward(self, **kwargs):
        base = self.peft_model.get_base_model()
        body = getattr(base, base.base_model_prefix)
        with torch.no_grad(), self.peft_model.disable_adapter():
            return body(**kwargs)


class _ZeroFeatures(nn.Module):
    """A critic trunk with no features: with group-centred rewards the value is a constant."""

    def __init__(self, hidden_size: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.hidden_size, self.dtype = hidden_size, dtype

    def forward(self, input_ids: torch.Tensor, **_) -> _Hidden:
        return _Hidden((input_ids.new_zeros(*input_ids.shape, self.hidden_size,
                                            dtype=self.dtype),))


class _ValueModel(nn.Module):
    base_model_prefix = "backbone"

    def __init__(self, backbone: _FrozenBase, score: nn.Linear) -> None:
        super().__init__()
        self.backbone, self.score = backbone, score


def _checked_rewards(values: Sequence[float], expected: int) -> list[float]:
    rewards = [float(v) for v in values]
    if len(rewards) != expected:
        raise ValueError(f"reward_fn returned {len(rewards)} rewards for {expected} completions")
    if not all(math.isfinite(r) for r in rewards):
        raise ValueError(f"reward_fn returned a non-finite reward: {rewards}")
    return rewards


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's and NumPy's global RNGs (TRL draws from both); restore them afterwards."""
    devices = [device] if device.type == "cuda" else []
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(numpy_state)


@contextlib.contextmanager
def _gc_frozen() -> Iterator[None]:
    """Exempt the objects that exist now from garbage collection for the block.

    TRL calls ``gc.collect()`` twice per PPO batch; in a process holding a simulation and
    models each call walks the whole heap (measured: 2.3 s of a 2.5 s tiny-model update, vs
    0.2 s with the heap frozen). Left alone when someone else has frozen objects already.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class PPOLearner:
    """TRL PPO updates and reward-weighted steps of one named adapter at a time.

    Args:
        adapters: the task adapters whose shared ``PeftModel`` is trained in place.
        settings: PPO hyper-parameters (see :class:`PPOSettings`).
    """

    def __init__(self, adapters: "TaskAdapters", settings: PPOSettings = PPOSettings()) -> None:
        if not isinstance(settings, PPOSettings):
            raise ValueError(f"settings must be a PPOSettings, got {type(settings).__name__}")
        self.adapters, self.settings = adapters, settings
        self._optimizers: dict[str, torch.optim.AdamW] = {}
        self._heads: dict[str, nn.Linear] = {}
        self._updates: dict[str, int] = {}
        self._tokenizers: dict[str, object] = {}

    # -- PPO ------------------------------------------------------------------------------------

    def update(self, adapter: str, prompts: Sequence[str], reward_fn: RewardFn,
               choices: Sequence[Choices | None] | None = None) -> PPOStats:
        """One PPO update of ``adapter`` on rollouts from ``prompts`` scored by ``reward_fn``.

        ``prompts`` are in the model's chat format, ready for generation. ``reward_fn(indices,
        texts)`` gets, for each sampled completion, the index of its prompt and its decoded text,
        and returns one finite reward per completion. ``choices`` (one per prompt, None: free
        text) constrain each prompt's rollouts to its closed set of answers, as the task's
        other decodes are (``agents/choices.py``; see :class:`_ChoiceRollouts`).
        """
        self._check_adapter(adapter)
        prompts = self._check_prompts(prompts)
        if not callable(reward_fn):
            raise ValueError(f"reward_fn must be callable, got {type(reward_fn).__name__}")
        require(choices is None or len(choices) == len(prompts), "choices",
                None if choices is None else len(choices), f"one per prompt ({len(prompts)})")
        from datasets import Dataset  # on use: datasets (pandas, pyarrow) adds ~0.7 s to import

        ids = [self.adapters.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        tokenizer = self._ppo_tokenizer(ids)
        rollouts, k = self.settings.rollouts_per_update, self.settings.samples_per_prompt
        per_batch = rollouts // k  # prompts per PPO batch
        count = self._updates.get(adapter, 0)
        seed = derived_seed(self.settings.seed, adapter, count)
        order = [i % len(ids) for i in range(math.ceil(len(ids) / per_batch) * per_batch)]
        if k > 1:
            order = [order[j] for j in np.random.default_rng(seed).permutation(len(order))]
        rows = [ids[i] for i in order for _ in range(k)]
        width = max(len(seq) for seq in ids)
        queries = {tuple(seq): i for i, seq in reversed(list(enumerate(ids)))}  # first index wins
        reward = _RewardBackbone(queries, width, tokenizer, reward_fn, centred=k > 1)
        start = time.perf_counter()
        with self._training(adapter), tempfile.TemporaryDirectory(prefix="ppo-") as out:
            collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=width)
            dataset = Dataset.from_dict({"input_ids": rows})
            trainer = self._trainer(adapter, out, tokenizer, dataset, collator,
                                    _RewardModel(reward), seed)
            if k > 1:  # keep each prompt's k rollouts in one batch (TRL's loader shuffles rows)
                trainer.dataloader = trainer.accelerator.prepare(DataLoader(
                    dataset, batch_size=rollouts, shuffle=False, collate_fn=collator,
                    drop_last=True))
            steps = [0]
            hook = self._optimizers[adapter].register_step_post_hook(
                lambda *_: steps.__setitem__(0, steps[0] + 1))
            constrained = contextlib.nullcontext()
            if choices is not None and any(c is not None for c in choices):
                constrained = _constrained_generate(self.adapters.model, queries, choices,
                                                    self.adapters.tokenizer)
            try:
                # TRL prints a banner and every log line to stdout; the stats are returned instead.
                with _seeded(seed + 1, trainer.accelerator.device), _gc_frozen(), constrained, \
                        contextlib.redirect_stdout(io.StringIO()):
                    trainer.train()
            finally:
                hook.remove()
            logs = [e for e in trainer.state.log_history if "loss/policy_avg" in e]
        self._updates[adapter] = count + 1
        return PPOStats(
            mean_reward=float(np.mean(reward.rewards)),
            kl=float(np.mean([e["objective/kl"] for e in logs])),
            policy_loss=float(np.mean([e["loss/policy_avg"] for e in logs])),
            value_loss=float(np.mean([e["loss/value_avg"] for e in logs])),
            optimizer_steps=steps[0], rollouts=len(reward.rewards),
            seconds=time.perf_counter() - start)

    def _trainer(self, adapter: str, out: str, tokenizer, dataset, collator, reward_model,
                 seed: int):
        # On use: trl.experimental warns when imported, and evaluation and the sandbox import
        # this module without ever running TRL.
        from trl.experimental.ppo import PPOConfig, PPOTrainer

        s, model = self.settings, self.adapters.model
        device = next(model.parameters()).device
        config = PPOConfig(
            output_dir=out, use_cpu=device.type == "cpu", bf16=False, report_to="none",
            save_strategy="no", disable_tqdm=True, seed=seed, learning_rate=s.learning_rate,
            per_device_train_batch_size=s.rollouts_per_update, gradient_accumulation_steps=1,
            num_mini_batches=s.rollouts_per_update // s.mini_batch_size,
            local_rollout_forward_batch_size=s.rollouts_per_update, num_ppo_epochs=s.ppo_epochs,
            kl_coef=s.kl_coef, temperature=s.temperature, response_length=s.max_new_tokens,
            total_episodes=len(dataset), num_sample_generations=0, stop_token="eos")
        optimizer = self._optimizer(adapter)
        constant = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        with _seeded(seed, device):  # TRL seeds the global RNG in __init__ and draws in train()
            trainer = PPOTrainer(
                args=config, processing_class=tokenizer, model=model, ref_model=None,
                reward_model=reward_model, train_dataset=dataset,
                value_model=_ValueModel(
                    _ZeroFeatures(model.config.hidden_size, self._head(adapter).weight.dtype)
                    if s.samples_per_prompt > 1 else _FrozenBase(model), self._head(adapter)),
                data_collator=collator, optimizers=(optimizer, constant))
        for callback in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(callback)
        return trainer

    # -- online adaptation ------------------------------------------------------------------------

    def supervised_update(self, adapter: str, prompts: Sequence[str],
                          completions: Sequence[str], lr: float, steps: int = 2) -> float:
        """``steps`` AdamW steps of the completion-only cross-entropy of ``completions`` (each
        followed by the end-of-turn token, so the answer's end is learned too) on ``adapter``
        alone: the online expert-iteration step. A fresh optimiser each call, so the step
        depends only on the weights and its inputs (a loaded state continues identically).
        Returns the loss before the first step."""
        self._check_adapter(adapter)
        prompts = self._check_prompts(prompts)
        if isinstance(completions, str) or len(completions) != len(prompts) or not all(
                isinstance(c, str) for c in completions):
            raise ValueError(f"completions must be a sequence of {len(prompts)} strings, one per "
                             "prompt")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"invalid lr={lr!r}: expected a finite number > 0")
        if not (isinstance(steps, int) and steps >= 1):
            raise ValueError(f"invalid steps={steps!r}: expected an integer >= 1")
        eos = self.adapters.tokenizer.eos_token or ""
        targets = [c + eos for c in completions]
        params = self.adapters.parameters(adapter)
        count = self._updates.get(adapter, 0)
        self._updates[adapter] = count + 1
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        first = float("nan")
        with self._training(adapter), _seeded(derived_seed(self.settings.seed, adapter, count),
                                              params[0].device):
            self.adapters.model.train()
            for step in range(steps):
                optimizer.zero_grad()
                loss = 0.0
                # One prompt per backward pass, gradients accumulated: the same gradient as the
                # whole batch's mean loss (to float rounding; measured 8e-7 relative), with the
                # activations of one prompt alive instead of all of them (the embedded model,
                # four ~450-token prompts: 2.9 GB -> 1.2 GB at peak) and no padding.
                for prompt, target in zip(prompts, targets):
                    part = -self._mean_logprobs([prompt], [target])[0] / len(prompts)
                    part.backward()
                    loss += float(part.detach())
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                first = loss if step == 0 else first
            optimizer.zero_grad(set_to_none=True)
        return first

    def _mean_logprobs(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        """Each completion's mean token log-probability given its prompt (0 for empty ones)."""
        tok = self.adapters.tokenizer
        pairs = [(tok(p, add_special_tokens=False)["input_ids"],
                  tok(c, add_special_tokens=False)["input_ids"]) for p, c in zip(prompts, completions)]
        width = max(len(p) + len(c) for p, c in pairs)
        device = next(self.adapters.model.parameters()).device
        ids = torch.zeros(len(pairs), width, dtype=torch.long, device=device)
        attention = torch.zeros_like(ids)
        target = torch.zeros(len(pairs), width, dtype=torch.bool, device=device)
        for row, (p, c) in enumerate(pairs):  # right padding keeps default positions correct
            ids[row, :len(p) + len(c)] = torch.tensor(p + c, device=device)
            attention[row, :len(p) + len(c)] = 1
            target[row, len(p):len(p) + len(c)] = True
        # Logits only where the next token is a completion token (transformers' boolean
        # ``logits_to_keep``, flattened in row-major order): the vocabulary projection and its
        # log-softmax over the prompt positions were most of the step's memory.
        wanted = target[:, 1:]  # completion tokens after the first position (one predicts them)
        predicts = torch.zeros_like(target)
        predicts[:, :-1] = wanted
        logits = self.adapters.model(input_ids=ids, attention_mask=attention,
                                     logits_to_keep=predicts).logits
        logits = logits.reshape(-1, logits.shape[-1])
        tokens = ids[:, 1:][wanted]
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens[:, None])[:, 0]
        counts = wanted.sum(1)
        rows = torch.repeat_interleave(torch.arange(len(pairs), device=device), counts)
        sums = torch.zeros(len(pairs), dtype=logp.dtype, device=device).index_add(0, rows, logp)
        return sums / counts.clamp(min=1)

    # -- optimiser state ----------------------------------------------------------------------------

    def optimizer_state(self, adapter: str) -> dict[str, torch.Tensor]:
        """The adapter's learner state as named tensors (for safetensors), empty before any update.

        ``"updates"``: how many updates and online steps it had (they seed its rollouts, so a
        restored learner continues the same random stream). After its first PPO update also the
        value head (``value_head.weight``, ``value_head.bias``) and the AdamW slots
        ``"<param>/exp_avg"``, ``"<param>/exp_avg_sq"`` and ``"<param>/step"`` of each LoRA
        parameter (named as in ``TaskAdapters.state``) and value-head parameter.
        """
        self._check_adapter(adapter)
        if adapter not in self._updates:
            return {}
        state = {"updates": torch.tensor(self._updates[adapter], dtype=torch.int64)}
        optimizer = self._optimizers.get(adapter)
        if optimizer is None:
            return state
        for key, value in self._heads[adapter].state_dict().items():
            state[f"{_HEAD}.{key}"] = value.detach().clone()
        for name, param in self._named_trainables(adapter).items():
            for slot, value in optimizer.state.get(param, {}).items():
                state[f"{name}/{slot}"] = torch.as_tensor(value).detach().clone()
        return state

    def load_optimizer_state(self, adapter: str, state: dict[str, torch.Tensor],
                             complete: bool = False) -> None:
        """Restore what :meth:`optimizer_state` returned (an empty dict resets the adapter's).

        ``complete``: the state must be one saved after a PPO update, holding the value head and
        every AdamW slot of every trainable parameter; a missing slot would otherwise restart
        that parameter's moments silently, and a resumed run would drift from the one never
        stopped. ValueError (the adapter's learner reset) when it is not."""
        self._check_adapter(adapter)
        self.reset_optimizer(adapter)
        if not state and not complete:
            return
        if "updates" not in state:
            raise ValueError(f"optimizer state of {adapter!r} lacks 'updates'")
        rest = dict(state)
        self._updates[adapter] = int(rest.pop("updates"))
        if not rest and not complete:
            return
        head = self._head(adapter)
        head_keys = {f"{_HEAD}.{k}" for k in head.state_dict()}
        if not head_keys <= rest.keys():
            self.reset_optimizer(adapter)
            raise ValueError(f"optimizer state of {adapter!r} lacks {sorted(head_keys - rest.keys())}")
        head.load_state_dict({k.removeprefix(f"{_HEAD}."): rest.pop(k) for k in head_keys})
        try:
            self._load_slots(adapter, rest)
            if complete:
                self._check_slots_complete(adapter)
        except ValueError:
            self.reset_optimizer(adapter)
            raise

    def _check_slots_complete(self, adapter: str) -> None:
        optimizer = self._optimizer(adapter)
        missing = [f"{name}/{slot}" for name, param in self._named_trainables(adapter).items()
                   for slot in _SLOTS if slot not in optimizer.state.get(param, {})]
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            raise ValueError(f"optimizer state of {adapter!r} lacks {len(missing)} AdamW slots "
                             f"({shown})")

    def _load_slots(self, adapter: str, slots: dict[str, torch.Tensor]) -> None:
        optimizer, params = self._optimizer(adapter), self._named_trainables(adapter)
        for key, value in slots.items():
            name, _, slot = key.rpartition("/")
            if name not in params or slot not in _SLOTS:
                raise ValueError(f"optimizer state of {adapter!r} has unknown entry {key!r}")
            param = params[name]
            if slot != "step" and value.shape != param.shape:
                raise ValueError(f"optimizer state {key!r} has shape {tuple(value.shape)}, "
                                 f"parameter has {tuple(param.shape)}")
            dtype = torch.float32 if slot == "step" else param.dtype
            optimizer.state[param][slot] = value.to(param.device, dtype).clone()

    def reset_optimizer(self, adapter: str) -> None:
        """Forget an adapter's optimiser, value head and counter (e.g. after it was replaced)."""
        for table in (self._optimizers, self._heads, self._updates):
            table.pop(adapter, None)

    # -- helpers ------------------------------------------------------------------------------------

    def _check_adapter(self, adapter: str) -> None:
        if adapter not in self.adapters.names:
            raise ValueError(f"unknown adapter {adapter!r}; known: {', '.join(self.adapters.names)}")

    @staticmethod
    def _check_prompts(prompts: Sequence[str]) -> list[str]:
        if isinstance(prompts, str) or not prompts:
            raise ValueError("prompts must be a non-empty sequence of strings")
        bad = [i for i, p in enumerate(prompts) if not isinstance(p, str) or not p]
        if bad:
            raise ValueError(f"prompts must be non-empty strings; bad indices {bad}")
        return list(prompts)

    def _ppo_tokenizer(self, prompt_ids: list[list[int]]):
        """A copy of the tokenizer whose pad token is neither the stop token nor in a prompt."""
        tok = self.adapters.tokenizer
        used = set().union(*prompt_ids) | {tok.eos_token_id}
        for pad in (tok.pad_token, tok.unk_token):
            if pad is not None and tok.convert_tokens_to_ids(pad) not in used:
                break
        else:
            raise ValueError("PPO needs a pad token that is not the eos token and appears in no "
                             f"prompt; pad {tok.pad_token!r} and unknown {tok.unk_token!r} do not")
        if pad not in self._tokenizers:
            copy_ = copy.deepcopy(tok)
            copy_.pad_token, copy_.padding_side = pad, "left"
            self._tokenizers[pad] = copy_
        return self._tokenizers[pad]

    def _head(self, adapter: str) -> nn.Linear:
        if adapter not in self._heads:
            ref = self.adapters.parameters(adapter)[0]
            head = nn.Linear(self.adapters.model.config.hidden_size, 1, device=ref.device,
                             dtype=ref.dtype)
            nn.init.zeros_(head.weight)  # a zero critic to start; no random draw needed
            nn.init.zeros_(head.bias)
            self._heads[adapter] = head
        return self._heads[adapter]

    def _named_trainables(self, adapter: str) -> dict[str, nn.Parameter]:
        named = dict(zip(self.adapters.state(adapter), self.adapters.parameters(adapter)))
        named.update({f"{_HEAD}.{k}": p for k, p in self._head(adapter).named_parameters()})
        return named

    def _optimizer(self, adapter: str) -> torch.optim.AdamW:
        params = list(self._named_trainables(adapter).values())
        current = self._optimizers.get(adapter)
        # A removed and re-added adapter has new parameter objects: its old state is meaningless.
        if current is None or [p for g in current.param_groups for p in g["params"]] != params:
            current = torch.optim.AdamW(params, lr=self.settings.learning_rate, weight_decay=0.0)
            self._optimizers[adapter] = current
        return current

    def _training(self, adapter: str):
        return adapter_training(self.adapters, adapter)


def _prompt_index(queries: dict[tuple[int, ...], int], ids: Sequence[int],
                  mask: Sequence[int]) -> int:
    """The index of the update's prompt a PPO row holds: its tokens under its attention mask
    (TRL pads the prompts with a pad token no prompt contains, then fills the padding with 0)."""
    query = tuple(t for t, m in zip(ids, mask) if m)
    if query not in queries:
        raise RuntimeError("PPO produced a query that is none of the update's prompts")
    return queries[query]


class _ChoiceRollouts(LogitsProcessor):
    """Masks every token that would leave a row's closed set of answers (``choices``, one per
    row, None for free text); a row whose answer is complete may only end (eos). One instance
    per ``generate`` call: it follows each row's answer token by token."""

    def __init__(self, choices: Sequence[Choices | None], tokenizer) -> None:
        self.states = [ChoiceState(c, tokenizer) if c is not None else None for c in choices]
        self.eos = tokenizer.eos_token_id
        self.started = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor
                 ) -> torch.FloatTensor:
        if self.started:  # after the first step, the last token is each row's previous pick
            for state, token in zip(self.states, input_ids[:, -1].tolist()):
                if state is not None and not state.done:
                    state.advance(token)
        self.started = True
        return constrain(scores, self.states, end=self.eos)


@contextlib.contextmanager
def _constrained_generate(model, queries: dict[tuple[int, ...], int],
                          choices: Sequence[Choices | None], tokenizer) -> Iterator[None]:
    """TRL's PPO samples rollouts with ``model.generate(input_ids=..., attention_mask=...,
    generation_config=...)`` and takes no logits processor, so ``model.generate`` is wrapped
    for the update: each call samples through a fresh :class:`_ChoiceRollouts` holding each
    row's prompt's ``choices`` (the row's prompt found as the reward model finds it). TRL reads
    the rollouts' old log-probabilities from the returned ``scores``; they are replaced by the
    model's own logits at the temperature (``output_logits``: before any processor), the
    distribution TRL's training forward computes, so the PPO ratio starts at 1 on the
    constrained samples."""
    original = model.generate

    def generate(*args, input_ids, attention_mask, **kwargs):
        rows = [choices[_prompt_index(queries, ids, mask)]
                for ids, mask in zip(input_ids.tolist(), attention_mask.tolist())]
        processor = _ChoiceRollouts(rows, tokenizer)
        out = original(*args, input_ids=input_ids, attention_mask=attention_mask,
                       logits_processor=LogitsProcessorList([processor]), output_logits=True,
                       **kwargs)
        config = kwargs.get("generation_config") or model.generation_config
        temperature = config.temperature if config.do_sample and config.temperature else 1.0
        out.scores = tuple(logits / temperature for logits in out.logits)
        return out

    model.generate = generate
    try:
        yield
    finally:
        del model.generate


@contextlib.contextmanager
def adapter_training(adapters: "TaskAdapters", adapter: str) -> Iterator[None]:
    """Make ``adapter`` the only trainable, active adapter of ``adapters``' shared model; put
    everything back afterwards (active adapter, ``requires_grad`` flags, dropout probabilities,
    generation config, train/eval mode: trainers such as TRL's change them)."""
    model = adapters.model
    if any("forward" in m.__dict__ for m in model.modules() if isinstance(m, LoraLinear)):
        raise RuntimeError("cannot train inside agents.fused_lora.fused_adapters: the LoRA "
                           "layers' forward is replaced there")
    was_training, active = model.training, model.active_adapter
    flags = [(p, p.requires_grad) for p in model.parameters()]
    dropout = [(m, m.p) for m in model.modules() if isinstance(m, nn.Dropout)]
    config = copy.deepcopy(model.generation_config)
    try:
        model.set_adapter(adapter)
        for p, _ in flags:
            p.requires_grad_(False)
        for p in adapters.parameters(adapter):
            p.requires_grad_(True)
        yield
    finally:
        model.set_adapter(active)
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, p in dropout:
            m.p = p
        model.get_base_model().generation_config = config
        model.train(was_training)
