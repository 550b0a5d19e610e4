"""Seeds derived from several parts: one generator seed per (run seed, name, counter, ...)."""

from __future__ import annotations

import zlib

import numpy as np


def derived_seed(*parts: int | str) -> int:
    """A 31-bit seed from integers and names (names hashed stably by CRC-32, not with ``hash``,
    so the seed is the same in every process)."""
    words = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0] >> 1)
