"""The text mode's spaces: the charset and lengths of prompts and text actions.

A module of its own so that the LLM side (``agents``, ``sandbox_rl.core``) can write valid text
actions without importing the simulator.
"""

from __future__ import annotations

import string

TEXT_CHARSET = string.printable
MAX_PROMPT_CHARS = 4096
MAX_COMPLETION_CHARS = 2048


def printable(text: str, limit: int) -> str:
    """``text`` inside a ``Text`` space of the env: its charset (else '?'), at most ``limit``."""
    return "".join(c if c in TEXT_CHARSET else "?" for c in text)[:limit]
