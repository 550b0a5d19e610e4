"""Where derived data lives: a per-user cache, never inside the repository or site-packages."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The data cache (``$SANDBOX_RL_CACHE`` or ``~/.cache/sandbox_rl``); created by ``make setup``."""
    env = os.environ.get("SANDBOX_RL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sandbox_rl"
