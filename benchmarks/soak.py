"""Soak: does a long run stay flat? One JSON line per part.

``env``: the PettingZoo env (``oasis_v0``, vector mode) with the five heuristic agents for
``--steps`` env steps, reset whenever the episode ends (every ``--max-cycles`` steps, so resets
are soaked too). ``evolve``: ``sandbox-rl evolve`` (:func:`run_evolution`, in this process) for
``--evolve-steps`` steps with a checkpoint every ``--checkpoint-every`` steps; the per-step
sample is taken by wrapping ``SelfEvolvingOasis.simulate_step`` here, in the benchmark (the
library is not changed), so a checkpoint's cost shows in the next step's sample.

Every step samples the resident set (psutil, else ``VmRSS`` in ``/proc/self/status``), the open
file descriptors (``/proc/self/fd``, once two listings 10 ms apart agree: library threads
open and close files of their own mid-sample) and the threads. Keys of both lines: part, users, steps,
seconds, rss_first / rss_last / rss_peak (bytes; first = after step 1, peak = of the samples),
rss_slope (least-squares bytes per step over the second half of the samples: a leak keeps
climbing there, warm-up does not), fds_first / fds_last (per-step samples), fds_opened (what
the descriptors open at the last sample but not at the first are open on), fds_before /
fds_after (before the part and after it has closed everything), fds_held (what the descriptors
opened during the part and still open after it are open on: a leak, or a bounded cache such as
matplotlib's fonts, opened once by the run's plots), threads_first / threads_last,
temp_leaked (entries of ``tempfile.gettempdir()`` that appeared during the part and are still
there; other processes' entries show up too, so run it on a quiet machine). ``evolve`` adds
model, checkpoint_every, checkpoints_left (``<out>/checkpoints/step-*``; the last three are kept),
checkpoints_expected, checkpoint_steps and run_temporaries (publish temporaries left in or beside
the run folder).

    python benchmarks/soak.py [--parts env evolve] [--users 1000000] [--steps 1000]
                              [--evolve-steps 200] [--checkpoint-every 10] [--model embedded]
    python benchmarks/soak.py --quick     # 10k users x 100 steps; tiny-llama, 12 steps, every 2

The parts run one after the other in this process (``--parts`` runs one alone, for a clean
resident set).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from sandbox_rl.allocator import keep_freed_memory  # noqa: E402

PARTS = ("env", "evolve")
# Option: (full soak, --quick); explicit flags win over both.
SCALED = {"users": (1_000_000, 10_000), "steps": (1000, 100), "evolve_steps": (200, 12),
          "checkpoint_every": (10, 2), "model": ("embedded", "tiny-llama")}
# What an atomic save leaves if it dies: ``.<name>.<pid>-<token>.tmp|old`` (run_folders),
# ``.<name>.<pid>.tmp`` (markers, metrics) and the legacy ``.<name>.old-<pid>``.
_TEMPORARY = re.compile(r"\..+\.(tmp|old)|\..+\.old-\d+")


# ----------------------------------------------------------------------------- sampling
def rss_bytes() -> int:
    try:
        import psutil  # optional (not a dependency): /proc/self/status is the fallback
    except ImportError:
        with open("/proc/self/status") as f:
            kib = next(line for line in f if line.startswith("VmRSS:")).split()[1]
        return int(kib) * 1024
    return psutil.Process().memory_info().rss


def fd_targets() -> set[tuple[str, str]]:
    """(descriptor, what it is open on) of this process."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            found.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
    return found


def settled_fd_targets(tries: int = 20) -> set[tuple[str, str]]:
    """``fd_targets`` once two listings 10 ms apart agree.

    Library threads (tqdm's monitor, the tokenizer's and torch's workers) open and close files
    of their own at any instant; a descriptor caught open mid-flight is not one the run holds.
    """
    last = fd_targets()
    for _ in range(tries):
        time.sleep(0.01)
        now = fd_targets()
        if now == last:
            break
        last = now
    return last


def threads() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def temp_entries() -> set[str]:
    return set(os.listdir(tempfile.gettempdir()))


def slope(values: list[int]) -> float:
    """Least-squares bytes per step over the second half of ``values``."""
    ys = values[len(values) // 2:]
    n = len(ys)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(ys) / n
    cov = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(ys))
    return cov / sum((i - mean_x) ** 2 for i in range(n))


class Samples:
    """Per-step resident set, descriptors and threads, and the state before the part."""

    def __init__(self) -> None:
        gc.collect()
        self.rss: list[int] = []
        self.fds: list[int] = []
        self.threads: list[int] = []
        self.targets_before = settled_fd_targets()
        self.fds_before = len(self.targets_before)
        self.temp_before = temp_entries()
        self.start = time.perf_counter()

    def sample(self) -> None:
        targets = settled_fd_targets()
        if self.fds and len(targets) != self.fds[-1]:
            # A file dropped in a reference cycle stays open until the collector runs: that is
            # garbage, not a leak (a leak is still open after it).
            gc.collect()
            targets = settled_fd_targets()
        self.rss.append(rss_bytes())
        self.fds.append(len(targets))
        self.threads.append(threads())
        self.targets_last = targets
        if len(self.fds) == 1:
            self.targets_first = self.targets_last

    def figures(self, part: str, users: int) -> dict:
        seconds = time.perf_counter() - self.start
        gc.collect()  # what is still open after the part is held, not awaiting collection
        leaked = sorted(temp_entries() - self.temp_before)
        targets_after = settled_fd_targets()
        return {"part": part, "users": users, "steps": len(self.rss), "seconds": round(seconds, 1),
                "rss_first": self.rss[0], "rss_last": self.rss[-1], "rss_peak": max(self.rss),
                "rss_slope": round(slope(self.rss), 1),
                "fds_first": self.fds[0], "fds_last": self.fds[-1],
                "fds_opened": sorted(t for _, t in self.targets_last - self.targets_first),
                "fds_before": self.fds_before, "fds_after": len(targets_after),
                "fds_held": sorted(t for _, t in targets_after - self.targets_before),
                "threads_first": self.threads[0], "threads_last": self.threads[-1],
                "temp_leaked": leaked}


# ----------------------------------------------------------------------------- the parts
def soak_env(users: int, steps: int, max_cycles: int, seed: int) -> dict:
    # On use: the part's own stack: a part run alone (--parts) has a clean resident set.
    from sandbox_rl.envs import oasis_v0
    from sandbox_rl.envs.heuristics import HeuristicPolicy

    samples = Samples()
    env = oasis_v0.parallel_env(num_users=users, max_cycles=max_cycles)
    obs, _ = env.reset(seed=seed)
    policy, resets = HeuristicPolicy(env), 0
    for _ in range(steps):
        obs, *_ = env.step(policy(obs))
        if not env.agents:  # the episode ended: a new one, as a long-running trainer does
            resets += 1
            obs, _ = env.reset(seed=seed + resets)
        samples.sample()
    env.close()
    del env, policy, obs
    return {**samples.figures("env", users), "max_cycles": max_cycles, "resets": resets}


@contextlib.contextmanager
def sampled_steps(samples: Samples):
    """``SelfEvolvingOasis.simulate_step`` sampling after every step, while entered."""
    # On use: the part's own stack: a part run alone (--parts) has a clean resident set.
    from sandbox_rl.core.self_evolving_oasis import SelfEvolvingOasis

    original = SelfEvolvingOasis.simulate_step

    def simulate_step(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        samples.sample()
        return result

    SelfEvolvingOasis.simulate_step = simulate_step
    try:
        yield
    finally:
        SelfEvolvingOasis.simulate_step = original


def run_temporaries(out: Path) -> list[str]:
    """Publish temporaries in ``out`` (any depth) or beside it."""
    beside = [e for e in out.parent.iterdir() if e.name.startswith(f".{out.name}.")]
    inside = [p for p in out.rglob(".*") if _TEMPORARY.fullmatch(p.name)]
    return sorted(str(p) for p in beside + inside)


def soak_evolve(args: argparse.Namespace) -> dict:
    # On use: the part's own stack: a part run alone (--parts) has a clean resident set.
    import torch

    from sandbox_rl.core.run import EvolveRunConfig, run_evolution
    from sandbox_rl.run_folders import CHECKPOINTS, KEEP_CHECKPOINTS, evolve_checkpoints

    torch.set_num_threads(args.threads)
    out, every = Path(args.out), args.checkpoint_every
    config = EvolveRunConfig(steps=args.evolve_steps, checkpoint_every=every, out=str(out),
                             overwrite=True, quiet=True, model=args.model, users=args.evolve_users,
                             seed=args.seed)
    samples = Samples()
    with sampled_steps(samples):
        run_evolution(config)
    kept = sorted(step for step, path in evolve_checkpoints(out) if path.parent.name == CHECKPOINTS)
    saved = len(range(every, args.evolve_steps, every)) if every else 0  # none at the last step
    return {**samples.figures("evolve", args.evolve_users), "model": args.model,
            "checkpoint_every": every, "checkpoints_left": len(kept),
            "checkpoints_expected": min(saved, KEEP_CHECKPOINTS), "checkpoint_steps": kept,
            "run_temporaries": run_temporaries(out)}


# ----------------------------------------------------------------------------- command line
def _scaled(name: str) -> str:
    full, quick = SCALED[name]
    return f" (default {full:,}; --quick {quick:,})" if isinstance(full, int) \
        else f" (default {full}; --quick {quick})"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--quick", action="store_true", help="a smoke test on small settings")
    p.add_argument("--users", type=int, help="env: simulated users" + _scaled("users"))
    p.add_argument("--steps", type=int, help="env: env steps" + _scaled("steps"))
    p.add_argument("--max-cycles", type=int, default=200,
                   help="env: steps per episode, then a reset (default the env's 200)")
    p.add_argument("--evolve-steps", type=int, help="evolve: steps" + _scaled("evolve_steps"))
    p.add_argument("--checkpoint-every", type=int,
                   help="evolve: steps between checkpoints" + _scaled("checkpoint_every"))
    p.add_argument("--model", help="evolve: model of the five task agents" + _scaled("model"))
    p.add_argument("--evolve-users", type=int, default=1000,
                   help="evolve: simulated users (default evolve's 1000)")
    p.add_argument("--threads", type=int, default=2, help="evolve: torch CPU threads")
    p.add_argument("--out", default="runs/soak",
                   help="evolve: run folder (replaced if it is an earlier run's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name, values in SCALED.items():
        if getattr(args, name) is None:
            setattr(args, name, values[args.quick])
    for name in ("users", "steps", "max_cycles", "evolve_steps", "evolve_users", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.checkpoint_every < 0:
        p.error("--checkpoint-every must be >= 0")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    keep_freed_memory()  # as the command line does (sandbox_rl/allocator.py)
    if "env" in args.parts:
        print(json.dumps(soak_env(args.users, args.steps, args.max_cycles, args.seed)), flush=True)
    if "evolve" in args.parts:
        print(json.dumps(soak_evolve(args)), flush=True)


if __name__ == "__main__":
    main()
