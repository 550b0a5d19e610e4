"""Expert iteration's proposals on Ray actors (extra ``rllib``): ``train agents --ray-address``.

    sandbox-rl train agents --ray-address HOST:PORT --workers 8 ...

``workers`` actors each hold the base model and the task adapters. Every round the learner (the
driver) sends the task adapter's current weights as safetensors bytes through the object store
(one ``ray.put``, read by every actor) and hands each actor a contiguous share of the round's
states as (world seed, step, observation): the actor replays those training worlds on its own
env copies (``collect_episode`` is seeded, so it gets the driver's states, which the
observation checks; an env does not pickle), proposes (greedy, samples or the whole closed
set, the teacher) and scores every proposal by its re-seeded expected reward, exactly as
:func:`expert_iteration.propose` does in one process; the driver fine-tunes on the winners (TRL
``SFTTrainer``), validates and runs PPO.

Shares start at multiples of ``GREEDY_BATCH`` and a state's sampling seed is its number in the
round, so the actors decode the same greedy batches and draw the same samples as the serial
round: the same seed gives the same result for any worker count (tested on the tiny model).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from safetensors.torch import load, save

from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
from sandbox_rl.agents.models import load_model
from sandbox_rl.training.expert_iteration import (GREEDY_BATCH, Proposed, RoundSettings,
                                                  propose)
from sandbox_rl.training.task_episodes import collect_episode
from sandbox_rl.validation import require


def shares(count: int, workers: int, unit: int = GREEDY_BATCH) -> list[range]:
    """``count`` states cut into at most ``workers`` contiguous shares that start at multiples
    of ``unit``, as even as whole units allow (empty shares left out)."""
    require(workers >= 1, "workers", workers, "an integer >= 1")
    units = math.ceil(count / unit)
    per, extra = divmod(units, workers)
    out, start = [], 0
    for w in range(workers):
        stop = min(count, start + (per + (w < extra)) * unit)
        if stop > start:
            out.append(range(start, stop))
        start = stop
    return out


def weights_bytes(adapters: TaskAdapters, adapter: str) -> bytes:
    """The adapter's weights as safetensors bytes (what travels to the actors)."""
    return save({k: v.detach().cpu().contiguous() for k, v in adapters.state(adapter).items()})


# Worlds an actor keeps replayed (a round's states come from a few consecutive worlds).
KEPT_WORLDS = 16


@dataclass(frozen=True)
class Worlds:
    """How the training worlds are built (``collect_episode``'s arguments besides the seed)."""

    steps: int
    users: int


class ProposalWorker:
    """A Ray actor's state: the base model, the task adapters and replayed worlds."""

    def __init__(self, model: str, names: Sequence[str], rank: int, seed: int,
                 threads: int, worlds: Worlds) -> None:
        torch.set_num_threads(threads)  # in the actor's own process
        self.adapters = TaskAdapters(load_model(model), list(names), LoraSettings(rank=rank),
                                     seed)
        self.worlds, self.episodes = worlds, {}

    def _state(self, task: str, seed: int, index: int, observation: str) -> tuple:
        if (task, seed) not in self.episodes:
            if len(self.episodes) >= KEPT_WORLDS:
                self.episodes.pop(next(iter(self.episodes)))
            self.episodes[task, seed] = collect_episode(task, seed, self.worlds.steps,
                                                        self.worlds.users)
        episode = self.episodes[task, seed]
        if episode.steps[index].observation != observation:
            raise RuntimeError(f"world {seed} of {task} replayed on a Ray actor differs from "
                               f"the driver's at step {index} (same package and settings?)")
        return episode, index

    def propose(self, adapter: str, weights: bytes, refs: Sequence[tuple], first: int,
                settings: RoundSettings, round_index: int, seconds_left: float) -> Proposed:
        self.adapters.load_state(adapter, load(weights))
        states = [self._state(*ref) for ref in refs]
        # Deadlines travel as time left: perf_counter values mean nothing on another machine.
        return propose(self.adapters, adapter, states, settings, round_index,
                       time.perf_counter() + seconds_left, first)


class RayProposer:
    """An :data:`expert_iteration.Proposer` spreading a round's states over ``workers`` actors
    of ``threads`` CPUs each (call inside ``ray_runtime.ray_session``)."""

    def __init__(self, workers: int, model: str, names: Sequence[str], rank: int, seed: int,
                 threads: int, worlds: Worlds) -> None:
        import ray  # the optional extra: ray_session checked it

        require(workers >= 1, "workers", workers, "an integer >= 1")
        actor = ray.remote(num_cpus=threads)(ProposalWorker)
        self.actors = [actor.remote(model, list(names), rank, seed, threads, worlds)
                       for _ in range(workers)]

    def __call__(self, adapters: TaskAdapters, adapter: str, states: Sequence[tuple],
                 settings: RoundSettings, round_index: int,
                 deadline: float = math.inf) -> Proposed:
        import ray  # the optional extra, as in __init__

        weights = ray.put(weights_bytes(adapters, adapter))
        left = deadline - time.perf_counter()
        parts = shares(len(states), len(self.actors))
        refs = [(e.task.value, e.seed, i, e.steps[i].observation) for e, i in states]
        futures = [a.propose.remote(adapter, weights, [refs[i] for i in part], part.start,
                                    settings, round_index, left)
                   for a, part in zip(self.actors, parts)]
        out = Proposed()
        for part in ray.get(futures):
            out.extend(part)
        return out

    def close(self) -> None:
        """Stop the actors (their CPUs go back to the cluster)."""
        import ray  # the optional extra, as in __init__

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
