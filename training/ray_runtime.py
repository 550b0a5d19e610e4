"""Joining Ray (local or a cluster) with this package shipped to every worker (extra ``rllib``).

    with ray_session(address="auto", threads=1) as runtime_env:
        ...   # remote tasks and actors import sandbox_rl from the shipped copy

A fresh node needs Ray and this package's dependencies (torch, transformers, ...: Ray's docs
advise baking heavy dependencies into the node image), not this package nor its data: the
driver ships both in a ``runtime_env``:

- ``working_dir``: a staged copy of the importable ``sandbox_rl`` tree (Ray puts the working
  directory first on the workers' ``PYTHONPATH``, so the shipped copy is what they import) and
  the tweet corpus the worlds draw posts from (``sandbox_rl_cache/``, found through
  ``SANDBOX_RL_CACHE``, relative to the working directory the workers start in).
- ``env_vars``: the thread counts (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``): on a shared node
  every worker using all cores oversubscribes them.

Token authentication (Ray 2.60's ``ray start`` turns it on): the driver reads the cluster's token
from ``RAY_AUTH_TOKEN`` (or the file ``RAY_AUTH_TOKEN_PATH`` names) with ``RAY_AUTH_MODE=token``,
as every node does; nothing here handles the token.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sandbox_rl.paths import cache_dir
from sandbox_rl.training.common import import_optional
from sandbox_rl.validation import require

# Shipped next to the package; SANDBOX_RL_CACHE points there (workers start in working_dir).
SHIPPED_CACHE = "sandbox_rl_cache"
CORPUS_FILE = "tweets.npz"  # envs/corpus.py's CORPUS_FILE (the env stack is not imported here)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
CONNECT_TIMEOUT_S = 5.0
LOCAL = "local"  # the address of a Ray started on this machine (as address None)
DEFAULT_WORKERS = 2  # Ray actors of the commands' --workers when not given
# pyproject.toml's [tool.setuptools] packages (tests/training/test_ray_runtime.py checks it).
PACKAGES = ("sandbox_rl", "sandbox_rl.core", "sandbox_rl.core.strategies", "sandbox_rl.envs",
            "sandbox_rl.agents", "sandbox_rl.training")


def stage_package(dest: Path) -> Path:
    """Copy the importable ``sandbox_rl`` tree into ``dest/sandbox_rl`` and the corpus into
    ``dest/sandbox_rl_cache``; return ``dest``.

    Written by hand because Ray's ``py_modules`` ships a package from its one folder, while an
    editable install of this package maps its subpackages to the repository's top-level
    folders (``envs/`` is ``sandbox_rl.envs``): the tree is rebuilt from each subpackage's
    ``__path__``, which is right for editable and regular installs alike.
    """
    root = dest / "sandbox_rl"
    for name in PACKAGES:  # found, not imported: a subpackage's import may load torch
        source = Path(importlib.util.find_spec(name).submodule_search_locations[0])
        target = root.joinpath(*name.split(".")[1:])
        target.mkdir(parents=True, exist_ok=True)
        for path in source.glob("*.py"):
            shutil.copy2(path, target / path.name)
    corpus = cache_dir() / CORPUS_FILE
    if not corpus.is_file():
        raise FileNotFoundError(f"no corpus at {corpus} to ship to the Ray workers; "
                                "run `make setup` (it prepares the data cache)")
    (dest / SHIPPED_CACHE).mkdir()
    shutil.copy2(corpus, dest / SHIPPED_CACHE / CORPUS_FILE)
    return dest


def runtime_env(staged: Path, threads: int) -> dict:
    """The ``runtime_env`` shipping :func:`stage_package`'s folder, with thread counts set."""
    return {"working_dir": str(staged),
            "env_vars": {"SANDBOX_RL_CACHE": SHIPPED_CACHE,
                         **{var: str(threads) for var in THREAD_VARS}}}


def check_address(address: str | None, field: str = "address") -> None:
    """ValueError naming ``field`` unless ``address`` is None, ``local``, ``auto``,
    ``ray://HOST:PORT`` or a ``HOST:PORT`` that accepts a connection within
    :data:`CONNECT_TIMEOUT_S` (``ray.init`` itself keeps retrying an address nobody answers at
    for minutes)."""
    if address is None or address == LOCAL:
        return
    text = str(address).strip()
    require(bool(text), field, address, "a Ray address: auto, HOST:PORT or ray://HOST:PORT")
    if text == "auto" or text.startswith("ray://"):
        return
    host, _, port = text.rpartition(":")
    require(bool(host) and port.isdigit() and 0 < int(port) < 65536, field, address,
            "a Ray address: auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        require(False, field, address, f"the address of a running Ray cluster (nothing "
                                       f"answers there: {err})")


@contextlib.contextmanager
def ray_session(address: str | None, threads: int, num_cpus: int | None = None,
                extra: str = "rllib", field: str = "address") -> Iterator[dict]:
    """``ray.init`` with the package shipped (:func:`runtime_env`); shut down on exit.

    ``address`` None or ``local`` starts a Ray on this machine with ``num_cpus`` CPUs (default
    all); otherwise the driver joins that cluster (``auto``, ``HOST:PORT`` or
    ``ray://HOST:PORT``; checked by :func:`check_address`, errors naming ``field``), whose nodes
    declare their own CPUs (``num_cpus`` is not used).
    """
    require(threads >= 1, "threads", threads, "an integer >= 1")
    check_address(address, field)
    ray = import_optional("ray", extra)
    if ray.is_initialized():
        raise RuntimeError("Ray is already initialised in this process; shut it down first "
                           "(ray.shutdown()) so the run can ship the package to its workers")
    with tempfile.TemporaryDirectory(prefix="sandbox_rl_ray_") as tmp:
        env = runtime_env(stage_package(Path(tmp)), threads)
        if address is None or address == LOCAL:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     runtime_env=env)
        else:
            ray.init(address=address, log_to_driver=False, runtime_env=env)
        try:
            yield env
        finally:
            ray.shutdown()


def ray_map(function: Callable[[Any], Any], items: Sequence[Any], num_cpus: float = 1) -> list:
    """``function`` over ``items`` as Ray tasks (``num_cpus`` each) on the Ray this process
    joined, results in the order of ``items``."""
    ray = import_optional("ray", "rllib")
    if not ray.is_initialized():
        raise RuntimeError("ray_map needs Ray initialised (ray_session)")
    remote = ray.remote(num_cpus=num_cpus)(function)
    return ray.get([remote.remote(item) for item in items])
