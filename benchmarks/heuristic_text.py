"""content_generation's agents next to the heuristic's answer written as text, on the same steps.

    python benchmarks/heuristic_text.py --adapters runs/agents/adapters [--recsys reddit]

The protocol's heuristic arm plays the heuristic's structured action (topic and tone set
directly); an agent answers in text, which the env reads through the sentence-embedding model
and VADER. The heuristic's action written as text (``Task.format_action``, expert iteration's
teacher proposal) is the reference for an agent that answers in text: this script plays the
protocol's open-loop worlds (``play_open``) and scores that text on every step with the same
``TaskEpisode.score``, then prints one JSON line per adapter set with per-world means of the
agents, the heuristic, the heuristic as text and random actions, and the paired differences
(95% Student-t intervals) of the agents against each and of the heuristic's text against its
structured action. ``docs/results.md`` ("content_generation with 40 minutes").
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sandbox_rl.training.expert_iteration import heuristic_answer
from sandbox_rl.training.protocol import (DEFAULT_SEEDS, ProtocolConfig, adapter_answerer,
                                          load_task_adapters, paired_difference, play_open)

TASK = "content_generation"
ARMS = ("agents", "heuristic", "heuristic_text", "random")


def measure(config: ProtocolConfig, adapters: str | None, model: str) -> dict:
    """Per-world means of every arm on ``config``'s worlds; ``adapters`` None: untrained."""
    answer = adapter_answerer(load_task_adapters(config, Path(adapters) if adapters else None,
                                                 model))
    per_world: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for seed in config.seeds:
        run = play_open(TASK, seed, config, answer)
        text = [run.episode.score(i, heuristic_answer(run.episode, i))
                for i in range(len(run.episode.steps))]
        for arm in ("agents", "heuristic", "random"):
            per_world[arm].append(float(np.mean(run.rewards[arm])))
        per_world["heuristic_text"].append(float(np.mean(text)))
    pairs = [("agents", "heuristic"), ("agents", "heuristic_text"), ("agents", "random"),
             ("heuristic_text", "heuristic")]
    return {"task": TASK, "adapters": adapters or "untrained", "model": model,
            "recsys": config.recsys, "steps": config.steps, "users": config.users,
            "seeds": list(config.seeds),
            "mean": {arm: float(np.mean(v)) for arm, v in per_world.items()},
            "per_world": per_world,
            "differences": {f"{a} - {b}": paired_difference(per_world[a], per_world[b]).as_dict()
                            for a, b in pairs}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--adapters", default=None,
                   help="a folder of saved task adapters (default: untrained, the base model)")
    p.add_argument("--model", default="embedded")
    p.add_argument("--recsys", default="twitter")
    p.add_argument("--steps", type=int, default=8, help="env steps per held-out world")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS),
                   help="held-out worlds (default the registered 1000-1019)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = ProtocolConfig(tasks=(TASK,), seeds=tuple(args.seeds), steps=args.steps,
                            users=args.users, recsys=args.recsys)
    print(json.dumps(measure(config, args.adapters, args.model)), flush=True)


if __name__ == "__main__":
    main()
