"""The ``rgb_array`` frame of the Oasis env, drawn with numpy alone (fast enough for every step).

Layout of the ``FRAME_SHAPE`` frame (height 192, width 256, RGB uint8):

- top left: the last step's topic shares (posts + positive engagements by main topic), one bar
  per topic in the topic colours, scaled to the largest;
- top right: recent activity, one dot per step (the last ``ACTIVITY_HISTORY`` of the env):
  the fraction of users active (white) and the engagement rate of impressions (green), each
  scaled to its largest value in view;
- below, one row per agent (in ``TaskType`` order, a coloured tag on the left): its latest
  decoded action. MultiDiscrete components are cells (a topic in its colour, other choices on a
  dark-to-light ramp), Box components are bars, the content agent's text post is its main topic
  and its sentiment (red negative, green positive); a grey strip is the no-op (an answer that
  did not parse) and an empty row an agent that has not acted yet.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import gymnasium
import numpy as np

from sandbox_rl.enums import TaskType
from sandbox_rl.envs.platform import AgentPost, Platform
from sandbox_rl.envs.topics import NUM_TOPICS

FRAME_SHAPE = (192, 256, 3)  # multiples of 16, as video encoders want
_BACKGROUND = (24, 24, 32)
_NOOP = (90, 90, 90)
# Matplotlib's tab10, one colour per topic (and per agent for the tags).
_PALETTE = np.array([(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40),
                     (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127),
                     (188, 189, 34), (23, 190, 207)], dtype=np.uint8)
_TOPICS_BOX = (8, 8, 160, 64)  # x, y, width, height
_ACTIVITY_BOX = (176, 8, 72, 64)
_ROWS_X, _ROWS_Y, _ROW_H, _ROW_PITCH = 20, 80, 20, 22
_ROWS_W = FRAME_SHAPE[1] - _ROWS_X - 8


def draw_frame(platform: Platform, activity: Sequence[tuple[float, float]],
               actions: Mapping[str, Any], spaces: Mapping[str, gymnasium.Space]) -> np.ndarray:
    """The frame of ``platform`` after its last step; ``activity`` holds (active fraction,
    engagement rate) per recent step, ``actions`` the agents' decoded actions of the last step
    and ``spaces`` their structured action spaces."""
    frame = np.empty(FRAME_SHAPE, dtype=np.uint8)
    frame[:] = _BACKGROUND
    last = platform.last
    volume = last.topic_volume if last is not None else np.zeros(NUM_TOPICS)
    _bars(frame, _TOPICS_BOX, np.asarray(volume, dtype=float), _PALETTE)
    _activity(frame, _ACTIVITY_BOX, activity)
    for i, task in enumerate(TaskType):
        y = _ROWS_Y + i * _ROW_PITCH
        frame[y:y + _ROW_H, 8:14] = _PALETTE[i]
        if task.value in actions:
            _action(frame, (_ROWS_X, y, _ROWS_W, _ROW_H), actions[task.value],
                    spaces[task.value], _PALETTE[i])
    return frame


def _bars(frame: np.ndarray, box: tuple[int, int, int, int], values: np.ndarray,
          colours: np.ndarray, top: float | None = None) -> None:
    """Bottom-aligned bars of ``values`` in ``box``, ``top`` filling it (default: the largest)."""
    x, y, w, h = box
    pitch = max(1, w // max(len(values), 1))
    if top is None:
        top = float(np.max(values, initial=0.0))
    top = max(top, 1e-12)
    for i, v in enumerate(values[: w // pitch]):
        height = int(round(h * float(np.clip(v / top, 0.0, 1.0))))
        x0 = x + i * pitch
        frame[y + h - height:y + h, x0:x0 + max(1, pitch - 2)] = colours[i % len(colours)]


def _activity(frame: np.ndarray, box: tuple[int, int, int, int],
              history: Sequence[tuple[float, float]]) -> None:
    x, y, w, h = box
    frame[y + h - 1, x:x + w] = (60, 60, 70)  # baseline
    if not history:
        return
    series = np.asarray(history[-(w // 2):], dtype=float)
    columns = x + 2 * np.arange(len(series))
    for column, colour in ((0, (235, 235, 235)), (1, (60, 200, 90))):
        values = series[:, column]
        top = max(float(values.max()), 1e-12)
        rows = y + h - 2 - np.round((h - 2) * np.clip(values / top, 0, 1)).astype(int)
        for dy in (0, 1):  # 2 x 2 dots
            for dx in (0, 1):
                frame[rows + dy, columns + dx] = colour


def _ramp(fraction: float) -> np.ndarray:
    """Dark blue (0) to light yellow (1)."""
    lo, hi = np.array([40, 50, 120.0]), np.array([250, 230, 120.0])
    return (lo + (hi - lo) * float(np.clip(fraction, 0, 1))).astype(np.uint8)


def _action(frame: np.ndarray, box: tuple[int, int, int, int], action: Any,
            space: gymnasium.Space, colour: np.ndarray) -> None:
    x, y, w, h = box
    if action is None:
        frame[y + h // 2 - 2:y + h // 2 + 2, x:x + w] = _NOOP
    elif isinstance(action, AgentPost):
        frame[y:y + h, x:x + w // 2 - 2] = _PALETTE[int(np.argmax(action.topic_dist))]
        tone = float(np.clip(action.sentiment, -1, 1))
        frame[y:y + h, x + w // 2:x + w] = (int(128 - 100 * tone), int(128 + 100 * tone), 90)
    elif isinstance(space, gymnasium.spaces.MultiDiscrete):
        _cells(frame, box, np.asarray(action).ravel(), space.nvec.ravel())
    elif isinstance(space, gymnasium.spaces.Box):
        low, high = space.low.ravel(), space.high.ravel()
        values = (np.asarray(action, dtype=float).ravel() - low) / np.maximum(high - low, 1e-12)
        frame[y + h - 1, x:x + w] = (60, 60, 70)  # baseline: a weight of 1 fills the row
        _bars(frame, box, values, _PALETTE if values.size == NUM_TOPICS else colour[None], 1.0)


def _cells(frame: np.ndarray, box: tuple[int, int, int, int], values: np.ndarray,
           sizes: np.ndarray) -> None:
    x, y, w, h = box
    pitch = max(1, w // max(values.size, 1))
    for i, (v, n) in enumerate(zip(values[: w // pitch], sizes)):
        colour = _PALETTE[int(v)] if n == NUM_TOPICS else _ramp(v / max(int(n) - 1, 1))
        frame[y:y + h, x + i * pitch:x + i * pitch + max(1, pitch - 2)] = colour
