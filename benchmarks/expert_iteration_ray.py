"""Candidates proposed and scored per second: one process vs Ray actors (extra ``rllib``).

    python benchmarks/expert_iteration_ray.py [--workers 1 2] [--ray-address local|HOST:PORT]
        [--model embedded] [--task trend_prediction] [--states 16] [--samples 2] [--threads 1]

One expert-iteration round's proposals (``expert_iteration.propose``: greedy, ``--samples``
samples, the teacher; every distinct one scored over re-seeded draws) for ``--states`` states of
training worlds, timed in this process and with ``training/expert_iteration_ray.py``'s
``RayProposer`` for each ``--workers`` count (actors of ``--threads`` CPUs; a local Ray of
workers x threads CPUs, or the cluster at ``--ray-address``). The actors start and load the
model in a warm-up call on one greedy batch per actor without samples, from other worlds, which
is not timed; replaying the timed states' worlds on the actors is timed (a round's states come
from fresh worlds, so a training run pays it every round). One JSON line
per run: mode, workers, threads, states, candidates, seconds, candidates_per_s, ray (local or
cluster) and ``same_as_serial`` (the proposals and scores equal the in-process run's).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from sandbox_rl.allocator import keep_freed_memory
from sandbox_rl.training.ray_runtime import LOCAL, ray_session


def _key(p) -> tuple:
    return ([(e.completion, e.reward, e.source) for e in p.examples], p.greedy_scores,
            p.best_scores, p.candidates)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--ray-address", default=LOCAL)
    p.add_argument("--model", default="embedded")
    p.add_argument("--task", default="trend_prediction")
    p.add_argument("--states", type=int, default=16)
    p.add_argument("--samples", type=int, default=2)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--world-steps", type=int, default=8)
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from sandbox_rl.agents.lora import LoraSettings, TaskAdapters
    from sandbox_rl.agents.models import load_model
    from sandbox_rl.training import expert_iteration as ei
    from sandbox_rl.training.agents_trainer import TrainingWorlds
    from sandbox_rl.training.expert_iteration_ray import RayProposer, Worlds

    keep_freed_memory()
    torch.set_num_threads(args.threads)
    settings = ei.RoundSettings(samples=args.samples, draws=args.draws, seed=args.seed)
    warm = ei.RoundSettings(samples=0, draws=1, seed=args.seed)
    states = TrainingWorlds(args.task, args.seed, args.world_steps, args.users)(args.states)
    others = TrainingWorlds(args.task, args.seed + 1, args.world_steps, args.users)
    adapters = TaskAdapters(load_model(args.model), [args.task], LoraSettings(), args.seed)
    common = {"model": args.model, "task": args.task, "states": len(states),
              "samples": args.samples, "draws": args.draws, "users": args.users,
              "threads": args.threads}

    def line(mode: str, workers: int, seconds: float, proposed, same: bool | None) -> None:
        print(json.dumps({**common, "mode": mode, "workers": workers,
                          "ray": None if not workers else "local" if args.ray_address == LOCAL
                          else "cluster",
                          "candidates": proposed.candidates, "seconds": round(seconds, 2),
                          "candidates_per_s": round(proposed.candidates / seconds, 3),
                          "same_as_serial": same}), flush=True)

    ei.propose(adapters, args.task, others(ei.GREEDY_BATCH), warm, 0)  # warm-up, as below
    t0 = time.perf_counter()
    serial = ei.propose(adapters, args.task, states, settings, 0)
    line("in-process", 0, time.perf_counter() - t0, serial, None)
    for workers in args.workers:
        with ray_session(args.ray_address, args.threads, workers * args.threads):
            proposer = RayProposer(workers, args.model, [args.task], 8, args.seed,
                                   args.threads, Worlds(args.world_steps, args.users))
            proposer(adapters, args.task, others(ei.GREEDY_BATCH * workers), warm, 0)
            t0 = time.perf_counter()
            out = proposer(adapters, args.task, states, settings, 0)
            line("ray", workers, time.perf_counter() - t0, out, _key(out) == _key(serial))


if __name__ == "__main__":
    main()
