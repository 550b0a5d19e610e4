"""Expert iteration with the world as the verifier: the engine that makes the task agents better.

One round for a task (ReST / STaR style, the world's reward in place of a correctness check):

1. **States**: steps of training worlds (seeds below 1000), each with its env snapshot and the
   other roles' actions (``training/task_episodes.py``).
2. **Proposals**: for each state the adapter's greedy answer, ``samples`` answers sampled at
   ``temperature`` and, unless switched off, the task heuristic's action written as text
   (``TaskEpisode.heuristic_answer``): a teacher proposal the agent may adopt. With
   ``enumerate_proposals``, a task whose answer is one choice of a closed set
   (user_engagement's 31 campaigns) proposes every answer of the set instead of samples (a
   sample could only be one of them): an exhaustive search, so a state's winner is the world's
   best answer up to the draws' noise rather than the best the model happened to sample; its
   proposals are scored over ``enumeration_draws`` draws, since the best of 31 noisy scores
   favours the noisiest answers (user_engagement's smallest segments) at a few draws.
3. **Verdict**: every distinct proposal is scored by its counterfactual reward averaged over
   ``draws`` re-seeded replays of the next step (``Counterfactual.expected_rewards``): never the
   step's own draws, so a proposal cannot win by the luck of a future the agent could not see.
4. **Fine-tuning**: the best proposal of a state becomes a training example when it beats the
   adapter's greedy answer by more than ``margin``; TRL's ``SFTTrainer`` fine-tunes the task's
   LoRA adapter (only it: the base and the other adapters stay bit-identical) on every example
   gathered so far, with the loss on the completion only.

Between rounds the adapter's greedy reward on validation worlds (seeds 900-999, neither
training nor held-out) picks the best round's weights, so a round that hurts is not kept. What
is left of the task's time budget then goes to TRL PPO (``training/ppo.py``), rewarded with the
same re-seeded expected reward on exactly the text evaluation sees (cut at the stop strings);
PPO's weights are kept only if validation says they help.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch
from transformers import PrinterCallback, ProgressCallback

from sandbox_rl.agents.generation import SamplingSettings, generate_batch
from sandbox_rl.agents.kv_cache import PrefixCacheStore
from sandbox_rl.agents.lora import TaskAdapters
from sandbox_rl.agents.task_specs import TaskSpec, spec
from sandbox_rl.envs.heuristics import heuristic_action
from sandbox_rl.seeding import derived_seed
from sandbox_rl.training.ppo import adapter_training
from sandbox_rl.training.task_episodes import TaskEpisode, evaluate, greedy
from sandbox_rl.validation import Flag, Int, Real, check_fields

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundSettings:
    """How one round proposes, scores and fine-tunes (see the module docstring)."""

    samples: int = 6
    temperature: float = 1.0
    draws: int = 4
    margin: float = 0.0
    heuristic_proposals: bool = True
    learning_rate: float = 1e-3
    batch_size: int = 8
    epochs: int = 1
    seed: int = 0
    enumerate_proposals: bool = False
    enumeration_draws: int = 32

    def __post_init__(self) -> None:
        # Python ints (not bools) and Python numbers (bools too, as before the checks were
        # shared); checked, not normalised (the settings are frozen).
        positive = Real(0.0, open_low=True, numpy=False, bools=True,
                        text="a finite number > 0.0")
        check_fields(self, {
            "samples": Int(0, numpy=False), "draws": Int(1, numpy=False),
            "batch_size": Int(1, numpy=False), "epochs": Int(1, numpy=False),
            "seed": Int(0, numpy=False), "enumeration_draws": Int(1, numpy=False),
            "temperature": positive, "learning_rate": positive,
            "margin": Real(numpy=False, bools=True, text="a finite number"),
            "heuristic_proposals": Flag(numpy=False), "enumerate_proposals": Flag(numpy=False)},
            normalise=False)


@dataclass(frozen=True)
class Example:
    """A state's winning answer: ``prompt`` (chat format) and the ``completion`` to learn."""

    prompt: str
    completion: str
    reward: float  # the winner's expected reward
    greedy_reward: float  # the adapter's greedy answer's, same draws
    source: str  # "sample", "heuristic", "enumerated"


@dataclass
class RoundStats:
    states: int = 0
    examples: int = 0
    candidates: int = 0  # distinct proposals scored
    from_heuristic: int = 0
    from_enumeration: int = 0  # winners that only the enumerated closed set proposed
    greedy_reward: float = 0.0  # mean expected reward of the greedy answers of the states
    best_reward: float = 0.0  # mean expected reward of the best proposal of each state
    sft_loss: float = float("nan")
    seconds: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- proposals


def greedy_answers(adapters: TaskAdapters, adapter: str, task_spec: TaskSpec,
                   observations: Sequence[str], batch: int = 8) -> list[str]:
    """The adapter's greedy answers (what the env parses) to ``observations``."""
    s = greedy(task_spec)
    out = []
    for lo in range(0, len(observations), batch):
        chunk = observations[lo:lo + batch]
        requests = [s.request(adapters.tokenizer, o, adapter) for o in chunk]
        done = generate_batch(adapters.model, adapters.tokenizer, requests, multi_adapter=True)
        out += [s.answer(o, c.text) for o, c in zip(chunk, done)]
    return out


def sampled_answers(adapters: TaskAdapters, adapter: str, task_spec: TaskSpec,
                    observation: str, samples: int, temperature: float, seed: int) -> list[str]:
    """``samples`` answers sampled at ``temperature`` (no nucleus cut). The whole prompt is the
    rows' shared prefix, so its states are computed once for all samples, not once per row."""
    sampling = SamplingSettings(task_spec.sampling.max_new_tokens, temperature, 1.0,
                                task_spec.sampling.stop)
    request = task_spec.request(adapters.tokenizer, observation, adapter, sampling)
    request = replace(request, prefix=request.prompt)
    store = PrefixCacheStore(adapters.model, persist=False)
    done = generate_batch(adapters.model, adapters.tokenizer, [request] * samples, seed=seed,
                          multi_adapter=True, prefix_caches=store)
    return [task_spec.answer(observation, c.text) for c in done]


# --------------------------------------------------------------------------- one round


@dataclass
class Proposed:
    """What proposing for a run of states gave: the winners that beat the greedy answer, and
    per state scored (in order) the greedy answer's and the best proposal's expected reward."""

    examples: list[Example] = field(default_factory=list)
    greedy_scores: list[float] = field(default_factory=list)
    best_scores: list[float] = field(default_factory=list)
    candidates: int = 0  # distinct proposals scored

    def extend(self, other: Proposed) -> None:
        self.examples += other.examples
        self.greedy_scores += other.greedy_scores
        self.best_scores += other.best_scores
        self.candidates += other.candidates


# Greedy answers are decoded this many states at a time; a share of a round's states that
# starts at a multiple of it decodes the same batches as the whole round does.
GREEDY_BATCH = 8

# (adapters, adapter, states, settings, round index, deadline) -> Proposed; propose() is the
# in-process one, training/expert_iteration_ray.py's RayProposer spreads states over Ray actors.
Proposer = Callable[[TaskAdapters, str, Sequence[tuple], "RoundSettings", int, float], Proposed]


def propose(adapters: TaskAdapters, adapter: str, states: Sequence[tuple],
            settings: RoundSettings, round_index: int, deadline: float = math.inf,
            first: int = 0) -> Proposed:
    """Propose and score for ``states`` (``(episode, step index)`` pairs, the round's states
    from number ``first`` on: a state's sampling seed is its number's); stops early at
    ``deadline`` (a ``time.perf_counter`` value)."""
    task_spec = spec(states[0][0].task)
    observations = [e.steps[i].observation for e, i in states]
    greedy_ = greedy_answers(adapters, adapter, task_spec, observations, GREEDY_BATCH)
    out = Proposed()
    for j, ((episode, i), obs) in enumerate(zip(states, observations)):
        if time.perf_counter() > deadline:
            break
        seed = derived_seed(settings.seed, adapter, round_index, first + j)
        closed = task_spec.closed_answers(obs) if settings.enumerate_proposals else None
        proposals = {greedy_[j]: "greedy"}
        if settings.samples and closed is None:
            for text in sampled_answers(adapters, adapter, task_spec, obs, settings.samples,
                                        settings.temperature, seed):
                proposals.setdefault(text, "sample")
        if settings.heuristic_proposals:
            proposals.setdefault(episode.heuristic_answer(i), "heuristic")
        for text in closed or []:
            proposals.setdefault(text, "enumerated")
        texts = list(proposals)
        draws = settings.draws if closed is None else settings.enumeration_draws
        scores = episode.expected_scores(i, texts, draws, seed)
        best = int(np.argmax(scores))
        out.greedy_scores.append(scores[0])
        out.best_scores.append(scores[best])
        out.candidates += len(texts)
        if scores[best] > scores[0] + settings.margin:
            out.examples.append(Example(task_spec.prompt(adapters.tokenizer, obs),
                                        task_spec.completion(obs, texts[best]), scores[best],
                                        scores[0], proposals[texts[best]]))
    return out


def collect_examples(adapters: TaskAdapters, adapter: str, states: Sequence[tuple],
                     settings: RoundSettings, round_index: int, stats: RoundStats,
                     deadline: float = math.inf, proposer: Proposer | None = None
                     ) -> list[Example]:
    """Propose, score and keep the winners for ``states`` (``(episode, step index)`` pairs)
    with ``proposer`` (default :func:`propose`, in this process); stops early at
    ``deadline``."""
    out = (proposer or propose)(adapters, adapter, states, settings, round_index, deadline)
    stats.states += len(out.greedy_scores)
    stats.examples += len(out.examples)
    stats.candidates += out.candidates
    stats.from_heuristic += sum(e.source == "heuristic" for e in out.examples)
    stats.from_enumeration += sum(e.source == "enumerated" for e in out.examples)
    stats.greedy_reward = (float(np.mean(out.greedy_scores)) if out.greedy_scores
                           else float("nan"))
    stats.best_reward = float(np.mean(out.best_scores)) if out.best_scores else float("nan")
    return out.examples


def fine_tune(adapters: TaskAdapters, adapter: str, examples: Sequence[Example],
              settings: RoundSettings, seed: int) -> float:
    """TRL ``SFTTrainer`` on ``examples`` with the loss on the completions only, training
    ``adapter`` alone; returns the mean training loss. Each completion ends with the
    end-of-turn token, so the model learns where its answer stops."""
    # On use: datasets (pandas, pyarrow) and TRL add ~1 s to import, and evaluation and the
    # sandbox import this module without fine-tuning.
    import datasets
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    data = datasets.Dataset.from_dict({"prompt": [e.prompt for e in examples],
                                       "completion": [e.completion for e in examples]})
    device = next(adapters.model.parameters()).device
    with tempfile.TemporaryDirectory() as out, adapter_training(adapters, adapter), \
            contextlib.redirect_stdout(io.StringIO()):
        config = SFTConfig(
            output_dir=out, use_cpu=device.type == "cpu", bf16=False, report_to="none",
            save_strategy="no", disable_tqdm=True, seed=seed, data_seed=seed,
            learning_rate=settings.learning_rate, lr_scheduler_type="constant",
            per_device_train_batch_size=settings.batch_size, num_train_epochs=settings.epochs,
            completion_only_loss=True, logging_steps=1, dataset_num_proc=None)
        trainer = SFTTrainer(model=adapters.model, args=config, train_dataset=data,
                             processing_class=adapters.tokenizer)
        for callback in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(callback)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            result = trainer.train()
    return float(result.training_loss)


def validation_reward(adapters: TaskAdapters, adapter: str, episodes: Sequence[TaskEpisode]
                      ) -> float:
    """The adapter's greedy mean reward over every step of ``episodes`` (step's own draws,
    as the held-out evaluation scores)."""
    return evaluate(adapters, adapter, episodes, greedy(spec(episodes[0].task))).mean_reward


def states_of(episodes: Sequence[TaskEpisode]) -> list[tuple[TaskEpisode, int]]:
    return [(e, i) for e in episodes for i in range(len(e.steps))]


@dataclass
class Rounds:
    """Where a task's rounds stand after ``done`` of them: what the next round depends on
    besides the adapter's current weights and the states it is given."""

    start_reward: float  # the validation reward at the start
    best_reward: float  # the best validation reward so far (the start's included)
    best_state: dict[str, torch.Tensor]  # the adapter's weights of that reward
    buffer: list[Example]  # every example so far (each round fine-tunes on all of them)
    done: int = 0  # rounds finished: the index of the next one


def run_rounds(adapters: TaskAdapters, adapter: str, next_states: Callable[[int], list],
               validation: Sequence[TaskEpisode], settings: RoundSettings, deadline: float,
               states_per_round: int,
               on_round: Callable[[int, RoundStats, float, Rounds], None],
               rounds: Rounds | None = None, max_rounds: int | None = None,
               proposer: Proposer | None = None) -> tuple[float, float]:
    """Rounds until ``deadline`` (and, unless None, until ``max_rounds`` rounds are done in
    all); keeps the weights of the best validation reward (the start included). After each
    round ``on_round(index, stats, validation reward, rounds)``. ``rounds``: where to continue
    from (as ``on_round`` was given it; the adapter holding its current weights), None: the
    start. ``proposer``: who proposes and scores (default in this process). Returns
    (validation reward at the start, the kept weights' validation reward)."""
    if rounds is None:
        start_reward = validation_reward(adapters, adapter, validation)
        rounds = Rounds(start_reward, start_reward, adapters.state(adapter), [])
    while time.perf_counter() < deadline and (max_rounds is None or rounds.done < max_rounds):
        round_index, stats, t0 = rounds.done, RoundStats(), time.perf_counter()
        # With a teacher, round 0 only imitates it: the untrained model's samples rarely even
        # parse, and sampling is most of a round's cost.
        now = replace(settings, samples=0) if (round_index == 0 and
                                                settings.heuristic_proposals) else settings
        rounds.buffer += collect_examples(adapters, adapter, next_states(states_per_round), now,
                                          round_index, stats, deadline, proposer)
        stats.seconds["propose"] = time.perf_counter() - t0
        if rounds.buffer and time.perf_counter() < deadline:
            t1 = time.perf_counter()
            stats.sft_loss = fine_tune(adapters, adapter, rounds.buffer, settings,
                                       derived_seed(settings.seed, adapter, round_index))
            stats.seconds["sft"] = time.perf_counter() - t1
        reward = validation_reward(adapters, adapter, validation)
        if reward > rounds.best_reward:
            rounds.best_reward, rounds.best_state = reward, adapters.state(adapter)
        rounds.done += 1
        on_round(round_index, stats, reward, rounds)
    adapters.load_state(adapter, rounds.best_state)
    return rounds.start_reward, rounds.best_reward
