"""Oasis social platform, version 0: five task agents acting in one simulated platform.

Factories follow PettingZoo's convention: ``parallel_env`` (native), ``raw_env`` (AEC through
``parallel_to_aec``) and ``env`` (AEC with PettingZoo's standard wrappers).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import sqlite3
from typing import Any, Mapping

import gymnasium
import numpy as np
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv
from pettingzoo.utils import wrappers
from pettingzoo.utils.conversions import parallel_to_aec_wrapper

from sandbox_rl.enums import TaskType
from sandbox_rl.envs.config import (Flag, Int, OneOf, PlatformConfig, check_fits_in_memory,
                                    require, shorten)
from sandbox_rl.envs.corpus import load_corpus
from sandbox_rl.envs.platform import Platform, StepOutcome, StepPlan
from sandbox_rl.envs.registration import DEFAULT_MAX_CYCLES
from sandbox_rl.envs.render import draw_frame
from sandbox_rl.envs.state import (STATE_FORMAT, STATE_VERSION, ArraySpec, check_arrays,
                                   check_int, check_keys, prefixed, split_arrays)
from sandbox_rl.envs.tasks import Task, make_tasks
from sandbox_rl.envs.text_features import get_analyzer
from sandbox_rl.envs.text_space import (  # noqa: F401  (re-exported: the env's text spaces)
    MAX_COMPLETION_CHARS, MAX_PROMPT_CHARS, TEXT_CHARSET, printable)
from sandbox_rl.envs.topics import NUM_TOPICS
from sandbox_rl.envs.trace import TraceStore
from sandbox_rl.validation import InvalidPath, InvalidValue

OBS_MODES = ("vector", "text")
ACTIVITY_HISTORY = 36  # steps of activity the rgb_array frame shows (one dot each)


class OasisParallelEnv(ParallelEnv):
    """A simulated social platform (in the spirit of OASIS) shared by five task agents.

    ## Description
    Users with interests over 10 named topics and 24 hourly activation probabilities live in a
    follower graph grown by preferential attachment with homophily. Each step is one hour: some
    users become active, a recommender (``twitter``, ``reddit`` or ``random``) builds each active
    user's feed from the most recent posts, and each user likes, dislikes, reposts, quotes,
    comments, follows, unfollows or mutes by a choice model of interest match, sentiment and
    social proof, and may write a post. Exogenous events make topics trend.

    ## Agents
    ``content_generation``, ``behavior_analysis``, ``network_optimization``,
    ``trend_prediction``, ``user_engagement`` (the values of ``TaskType``), all acting each step.

    ## Action Space
    vector mode: content_generation MultiDiscrete([10, 3]) (topic, tone); behavior_analysis
    MultiDiscrete([5] * panel_size) (class per panel user); network_optimization Box(0, 1, (4,))
    (recommender weights interest, recency, popularity, following); trend_prediction
    Box(0, 1, (10,)) (topic scores); user_engagement MultiDiscrete([10, 4]) (segment, intensity).
    text mode: ``Text(2048)`` for every agent: a completion parsed by the task's parser; one that
    does not parse is the task's no-op and ``info[agent]["parse_error"]`` says why.
    ``step`` (and the AEC env's ``step`` that receives it) raises ValueError for an action
    outside its space, naming the agent and the space: MultiDiscrete actions must be integers
    and Box actions real numbers (nothing is silently cast), text a ``str`` within ``Text``.

    ## Observation Space
    vector mode: a ``Box`` per agent (see ``sandbox_rl.envs.tasks``); text mode: ``Text(4096)``,
    a prompt rendering the same information. ``vector_observation(agent)`` gives the vector in
    either mode.

    ## State Space
    ``state()`` concatenates the five vector observations (in ``possible_agents`` order, in
    either mode) and lies in ``state_space``, the ``Box`` that concatenates their spaces.

    ## Rewards
    Each in [0, 1], computed from what the simulated users did in the step:
    - content_generation: (impressions of the agent's post with a like, repost, quote or comment
      - impressions with a dislike) / its impressions, clipped; 0 without a post or impressions.
    - behavior_analysis: fraction of the panel whose behaviour class it predicted correctly.
    - network_optimization: (1 + (impressions with a positive engagement - impressions with a
      dislike) / all impressions of the step) / 2; 0 without impressions.
    - trend_prediction: (1 + Spearman correlation of its topic scores with the step's topic
      volumes) / 2; 0.5 if either is constant; 0 for the no-op.
    - user_engagement: 0.5 + 0.5 * (campaign-activated users who engaged - annoyed users) /
      (targeted users * 0.24), clipped; 0.5 without a campaign.

    ## Starting State
    ``reset(seed)`` draws users, the follower graph and 24 hours of seed posts from the seed.

    ## Episode End
    No termination; every agent is truncated after ``max_cycles`` steps.

    ## Arguments
    ``max_cycles`` (``DEFAULT_MAX_CYCLES``, 200), ``obs_mode`` ("vector" | "text"),
    ``text_agents`` (in text mode, the agents that speak text, default all; the others keep
    vector spaces; a text agent's action may also be an action of its task's structured space,
    which skips parsing), ``panel_size`` (8),
    ``history`` (6), ``trace_path`` (SQLite trace file or None), ``trace_overwrite`` (False:
    an existing trace file raises ValueError at reset), ``render_mode`` (None | "ansi" |
    "human" | "rgb_array": a small RGB frame of topic shares, recent activity and the agents'
    latest actions), and every field of ``PlatformConfig`` (``num_users``, ``recsys``, ...).
    Each is checked against its type and range at construction (a ValueError names it), and
    a world whose estimated memory exceeds what this machine has available is refused.

    ## Saving and restoring
    ``state_dict()`` returns ``(meta, arrays)``: a JSON-serialisable dict and numpy arrays that
    hold everything the coming steps depend on (world, generator state, tasks' state, current
    observations); ``load_state_dict(meta, arrays)`` checks it whole (a ValueError names what is
    wrong, and the env is left untouched) and the env then continues exactly as the saved one
    would, bit for bit. It loads into a fresh env built with the same arguments without a
    ``reset()``. ``sandbox_rl.envs.state`` saves to disk (JSON + ``.npz``, no pickle) and takes
    in-memory snapshots. Not state: the SQLite trace (a load closes an open trace; the next
    ``reset()`` starts a new one), the lazily loaded text analyser, the tweet corpus and what the
    ``rgb_array`` frame shows of past steps (the latest actions and the activity history).

    ## Version History
    * v0: initial release.
    """

    metadata = {"name": "oasis_v0", "render_modes": ["ansi", "human", "rgb_array"],
                "render_fps": 4, "is_parallelizable": True}

    def __init__(self, max_cycles: int = DEFAULT_MAX_CYCLES, obs_mode: str = "vector",
                 panel_size: int = 8, history: int = 6, trace_path: str | None = None,
                 trace_overwrite: bool = False, render_mode: str | None = None,
                 text_agents: list[str] | None = None,
                 **world: Any) -> None:
        unknown = set(world) - PlatformConfig.field_names()
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for oasis_v0")
        self.config = PlatformConfig(**world)
        self.max_cycles = Int(1).check("max_cycles", max_cycles)
        self.obs_mode = OneOf(OBS_MODES).check("obs_mode", obs_mode)
        # The panel is drawn among the users without replacement.
        self._panel_size = Int(1, min(256, self.config.num_users)).check("panel_size", panel_size)
        self._history = Int(1, 48).check("history", history)
        modes = self.metadata["render_modes"]
        require(render_mode is None or render_mode in modes, "render_mode", render_mode,
                f"None or one of {modes}")
        self.render_mode = render_mode
        require(trace_path is None or (isinstance(trace_path, (str, os.PathLike))
                                       and bool(str(trace_path))),
                "trace_path", trace_path, "None or a file path")
        trace_overwrite = Flag().check("trace_overwrite", trace_overwrite)
        check_fits_in_memory(self.config)
        panel_size, history = self._panel_size, self._history
        self.trace_path = trace_path
        # An existing trace file is only replaced when asked; later resets of this env
        # replace the trace it wrote itself.
        self._trace_overwrite = trace_overwrite
        self.possible_agents = [t.value for t in TaskType]
        self.tasks: dict[str, Task] = make_tasks(panel_size, history, get_analyzer)
        self.text_agents = frozenset()
        if obs_mode == "text":
            self.text_agents = _text_agents(self.possible_agents if text_agents is None
                                            else text_agents)
        self._obs_spaces = {a: t.observation_space for a, t in self.tasks.items()}
        self._act_spaces = {a: t.action_space for a, t in self.tasks.items()}
        for a in self.text_agents:
            self._obs_spaces[a] = gymnasium.spaces.Text(MAX_PROMPT_CHARS, charset=TEXT_CHARSET)
            self._act_spaces[a] = gymnasium.spaces.Text(MAX_COMPLETION_CHARS, charset=TEXT_CHARSET)
        vector = [self.tasks[a].observation_space for a in self.possible_agents]
        self.state_space = gymnasium.spaces.Box(np.concatenate([s.low for s in vector]),
                                                np.concatenate([s.high for s in vector]),
                                                dtype=np.float32)
        self.agents: list[str] = []
        self.platform: Platform | None = None
        self.num_cycles = 0
        self._np_random: np.random.Generator | None = None
        self._vector_obs: dict[str, np.ndarray] = {}
        self._trace = None
        # Render-only (not state): the decoded actions of the last step and recent activity.
        self._last_actions: dict[str, Any] = {}
        self._activity: collections.deque = collections.deque(maxlen=ACTIVITY_HISTORY)

    def observation_space(self, agent: str) -> gymnasium.Space:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gymnasium.Space:
        return self._act_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None or self._np_random is None:
            self._np_random, _ = seeding.np_random(seed)
        self.platform = Platform(self.config, self._np_random, _corpus(self.config))
        for task in self.tasks.values():
            task.reset(self.platform, self._np_random)
        self.agents = self.possible_agents[:]
        self.num_cycles = 0
        self._last_actions, self._activity = {}, collections.deque(maxlen=ACTIVITY_HISTORY)
        self._open_trace()
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]):
        if not self.agents:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        infos, outcome, rewards = self._advance(actions, self.agents)
        if self.render_mode == "rgb_array":
            stats = self.platform.stats()
            self._activity.append((stats.active_users / stats.total_users, stats.engagement_rate))
        if self._trace is not None:
            self._trace.write_step(self.platform, outcome)
        self.num_cycles += 1
        done = self.num_cycles >= self.max_cycles
        terminations = {a: False for a in self.agents}
        truncations = {a: done for a in self.agents}
        observations = self._observations()
        for agent in self.agents:
            infos[agent].update(self._info(agent, outcome))
        if done:
            self.agents = []
            self._close_trace()
        if self.render_mode == "human":
            self.render()
        return observations, rewards, terminations, truncations, infos

    def current_observations(self) -> dict[str, Any]:
        """The live agents' observations after the last reset, step or state load (what
        ``reset`` / ``step`` returned), without advancing the world."""
        return {a: self.text_observation(a) if a in self.text_agents else self._vector_obs[a]
                for a in self.agents}

    def vector_observation(self, agent: str) -> np.ndarray:
        """The numeric observation of ``agent`` after the last reset or step (either mode)."""
        return self._vector_obs[agent]

    def text_observation(self, agent: str) -> str:
        """The prompt text of ``agent``'s current observation (either mode)."""
        return printable(self.tasks[agent].render(self._vector_obs[agent], self.platform),
                          MAX_PROMPT_CHARS)

    def render(self) -> str | np.ndarray | None:
        """``ansi``: a status line; ``human``: prints it; ``rgb_array``: an RGB frame (uint8,
        ``FRAME_SHAPE``) of topic shares, recent activity and the agents' latest actions."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without a render_mode; pass render_mode='ansi'")
            return None
        if self.platform is None:
            raise RuntimeError("render() called before reset(): there is no world yet")
        if self.render_mode == "rgb_array":
            spaces = {a: t.action_space for a, t in self.tasks.items()}
            return draw_frame(self.platform, list(self._activity), self._last_actions, spaces)
        s = self.platform.stats()
        line = (f"step {s.step} hour {self.platform.hour:02d}:00 | users {s.total_users} "
                f"active {s.active_users} | posts {s.total_posts} | edges {s.total_edges} | "
                f"engagement {s.engagement_rate:.3f} | trending {', '.join(s.trending_topics)}")
        if self.render_mode == "human":
            print(line)
            return None
        return line

    def close(self) -> None:
        self._close_trace()

    def state(self) -> np.ndarray:
        """A global state vector in ``state_space``: the concatenated vector observations."""
        return np.concatenate([self._vector_obs[a] for a in self.possible_agents])

    def follower_graph(self):
        """The current follower graph as a ``networkx.DiGraph``: nodes are the user ids
        ``0 .. num_users - 1``, an edge ``u -> v`` means user ``u`` follows user ``v``
        (see ``FollowGraph.to_networkx``). A copy: editing it leaves the world unchanged."""
        if self.platform is None:
            raise RuntimeError("follower_graph() called before reset(): there is no world yet")
        return self.platform.graph.to_networkx()

    # ------------------------------------------------------------------ state
    def constructor_kwargs(self) -> dict[str, Any]:
        """Arguments that build an env with this one's spaces and world (no trace, no render)."""
        text = sorted(self.text_agents, key=self.possible_agents.index)
        return {"max_cycles": self.max_cycles, "obs_mode": self.obs_mode,
                "panel_size": self._panel_size, "history": self._history,
                "text_agents": text if self.obs_mode == "text" else None,
                **dataclasses.asdict(self.config)}

    def state_dict(self) -> tuple[dict, dict[str, np.ndarray]]:
        """``(meta, arrays)``: the JSON-serialisable scalars and copies of every array of the
        env's state (see "Saving and restoring" in the class docstring)."""
        meta, arrays = self._state_views()
        return meta, {name: a.copy() for name, a in arrays.items()}

    def _state_views(self) -> tuple[dict, dict[str, np.ndarray]]:
        """:meth:`state_dict` with arrays aliasing the env's own (valid until the next step)."""
        if self.platform is None:
            raise RuntimeError("state_dict() called before reset(): there is no world yet")
        platform_meta, arrays = self.platform.state_dict()
        arrays = prefixed("platform.", arrays)
        task_meta = {}
        for agent, task in self.tasks.items():
            task_meta[agent], task_arrays = task.state_dict()
            arrays.update(prefixed(f"tasks.{agent}.", task_arrays))
        arrays.update(prefixed("obs.", self._vector_obs))
        meta = {"format": STATE_FORMAT, "version": STATE_VERSION, "env": self.constructor_kwargs(),
                "num_cycles": self.num_cycles, "agents": list(self.agents),
                "rng": self._np_random.bit_generator.state, "platform": platform_meta,
                "tasks": task_meta}
        return meta, arrays

    def load_state_dict(self, meta: dict, arrays: Mapping[str, np.ndarray]) -> None:
        """Continue from a :meth:`state_dict` of an env built with the same arguments.

        Everything is checked before anything changes: a wrong format version, a different
        configuration, a missing or unexpected entry or an array of the wrong dtype, shape or
        range raises ValueError naming it, and the env is left as it was.
        """
        self._check_state(meta, arrays)
        self._apply_state(meta, arrays)

    def _check_state(self, meta: Any, arrays: Mapping[str, np.ndarray]) -> None:
        check_keys(meta, ("format", "version", "env", "num_cycles", "agents", "rng", "platform",
                          "tasks"), "meta")
        if meta["format"] != STATE_FORMAT or meta["version"] != STATE_VERSION:
            raise ValueError(f"state format {meta['format']!r} version {meta['version']!r} is not "
                             f"{STATE_FORMAT!r} version {STATE_VERSION}")
        # Compared as JSON reads them back (tuples as lists), for saved and in-memory states alike.
        mine = json.loads(json.dumps(self.constructor_kwargs()))
        theirs = json.loads(json.dumps(meta["env"])) if isinstance(meta["env"], dict) else {}
        differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if differ:
            raise ValueError("state was saved by an env with a different configuration: "
                             + ", ".join(f"{k}={theirs.get(k)!r} (this env: {mine.get(k)!r})"
                                         for k in differ))
        cycles = check_int(meta["num_cycles"], "num_cycles", 0, self.max_cycles + 1)
        live = self.possible_agents if cycles < self.max_cycles else []
        if meta["agents"] != live:
            raise ValueError(f"state field 'agents' is {meta['agents']!r}, expected {live!r} "
                             f"after {cycles} of {self.max_cycles} cycles")
        self._check_rng_state(meta["rng"])
        if isinstance(meta["platform"], dict) and meta["platform"].get("t") != cycles:
            raise ValueError(f"state field 'platform.t' is {meta['platform'].get('t')!r}, "
                             f"expected num_cycles={cycles}")
        parts = split_arrays(arrays, ("platform.", "tasks.", "obs."))
        Platform.check_state(self.config, meta["platform"], parts["platform."])
        check_keys(meta["tasks"], self.possible_agents, "tasks")
        tasks = split_arrays(parts["tasks."], [a + "." for a in self.possible_agents], "tasks.")
        dims = {"N": self.config.num_users, "T": NUM_TOPICS, "K": self._panel_size,
                "H": self._history}
        for agent, task in self.tasks.items():
            task.check_state(meta["tasks"][agent], tasks[agent + "."], dims, f"tasks.{agent}.")
        check_arrays(parts["obs."], {a: ArraySpec("float32", t.observation_space.shape)
                                     for a, t in self.tasks.items()}, {}, "obs.")

    def _check_rng_state(self, state: Any) -> None:
        current = None if self._np_random is None else self._np_random.bit_generator
        probe = np.random.PCG64() if current is None else type(current)()
        try:
            probe.state = state
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"state field 'rng' is not a {type(probe).__name__} state: "
                             f"{err!r}") from None

    def _apply_state(self, meta: dict, arrays: Mapping[str, np.ndarray]) -> None:
        """Load a state that :meth:`_check_state` accepted (its arrays are copied)."""
        rng = self._np_random or np.random.Generator(np.random.PCG64())
        corpus = self.platform.corpus if self.platform is not None else _corpus(self.config)
        parts = split_arrays(arrays, ("platform.", "tasks.", "obs."))
        platform = Platform.from_state(self.config, rng, corpus, meta["platform"],
                                       parts["platform."])
        # Nothing above touched the env; from here on nothing can fail.
        self._close_trace()
        rng.bit_generator.state = meta["rng"]
        self._np_random, self.platform = rng, platform
        tasks = split_arrays(parts["tasks."], [a + "." for a in self.possible_agents])
        for agent, task in self.tasks.items():
            task.load_state_dict(meta["tasks"][agent], tasks[agent + "."], rng)
        self._vector_obs = {a: parts["obs."][a].copy() for a in self.possible_agents}
        self.num_cycles, self.agents = meta["num_cycles"], list(meta["agents"])
        self._last_actions, self._activity = {}, collections.deque(maxlen=ACTIVITY_HISTORY)

    # ------------------------------------------------------------------ internals
    def _advance(self, actions: dict[str, Any], reward_agents) -> tuple[dict, StepOutcome, dict]:
        """Decode ``actions``, step the world and compute the rewards of ``reward_agents``.

        Observations, counters and the trace are ``step``'s business; counterfactual scoring
        calls this alone on a scratch copy.
        """
        decoded, infos = self._decode(actions)
        if self.render_mode == "rgb_array":
            self._last_actions = decoded
        plan: dict[str, Any] = {}
        for agent, action in decoded.items():
            self.tasks[agent].decide(action, plan)
        outcome = self.platform.step(StepPlan(**plan))
        rewards = {a: self.tasks[a].reward(decoded.get(a), outcome, self.platform)
                   for a in reward_agents}
        return infos, outcome, rewards

    def _observations(self) -> dict[str, Any]:
        self._vector_obs = {a: self.tasks[a].observe(self.platform) for a in self.possible_agents}
        return self.current_observations()

    def _decode(self, actions: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict]]:
        unknown = set(actions) - set(self.agents)
        if unknown:
            raise ValueError(f"actions for unknown or finished agents: {sorted(unknown)}")
        decoded, infos = {}, {a: {} for a in self.agents}
        for agent, action in actions.items():
            action = self.check_action(agent, action)
            if isinstance(action, str):
                parsed = self.tasks[agent].parse(action)
                action = parsed.action
                if parsed.reason:
                    infos[agent]["parse_error"] = parsed.reason
            decoded[agent] = action
        return decoded, infos

    def check_action(self, agent: str, action: Any) -> Any:
        """``action`` as a member of ``agent``'s action space (arrays in the space's dtype), or a
        ValueError naming the agent, the space and the start of the action.

        Only lossless conversions: a MultiDiscrete action must be integers, a Box action real
        numbers (not complex, objects or strings), a text action a ``str`` in the ``Text``
        space; the space's ``contains`` decides. A text agent also takes an action of its
        task's structured space (baselines such as the heuristic scored on a text world).
        """
        space = self._act_spaces[agent]
        text = agent in self.text_agents
        if text and isinstance(action, str):
            if space.contains(action):
                return action
        else:
            structured = self.tasks[agent].action_space
            member = space_member(structured, action)
            if member is not None:
                return member
            if text:
                space = f"{space} (or a structured action in {structured})"
        raise ValueError(f"action {shorten(action)} of agent {agent!r} is outside its action "
                         f"space {space}")

    def _info(self, agent: str, outcome: StepOutcome) -> dict:
        info: dict[str, Any] = {"step": outcome.step, "hour": outcome.hour}
        if agent == TaskType.NETWORK_OPTIMIZATION.value:
            info["impressions"] = outcome.impressions
        if agent == TaskType.USER_ENGAGEMENT.value:
            info["campaign"] = outcome.campaign.__dict__.copy()
        if agent == TaskType.BEHAVIOR_ANALYSIS.value:
            info["panel"] = self.tasks[agent].panel.tolist()
        return info

    def _open_trace(self) -> None:
        self._close_trace()
        if self.trace_path is not None:
            try:
                self._trace = TraceStore(self.trace_path, overwrite=self._trace_overwrite)
                self._trace_overwrite = True
                self._trace.write_world(self.platform)
            except (ValueError, OSError, sqlite3.Error) as err:
                self._close_trace()
                # Named as the env's argument (as data), whichever layer refused the file.
                kind = InvalidValue if isinstance(err, ValueError) else InvalidPath
                raise kind("trace_path", str(self.trace_path), reason=str(err)) from err

    def _close_trace(self) -> None:
        if self._trace is not None:
            self._trace.close()
            self._trace = None


def space_member(space: gymnasium.Space, action: Any) -> np.ndarray | None:
    """``action`` cast to the dtype of ``space`` (a ``MultiDiscrete`` or ``Box``) if it is a
    member, else None. Integers only for ``MultiDiscrete``; real numbers only for ``Box``."""
    try:
        array = np.asarray(action)
    except (TypeError, ValueError, OverflowError):  # ragged sequences, huge integers
        return None
    discrete = isinstance(space, gymnasium.spaces.MultiDiscrete)
    if array.dtype.kind not in ("biu" if discrete else "biuf") or array.shape != space.shape:
        return None
    if discrete and not np.can_cast(array.dtype, space.dtype):  # uint64: may not fit
        return None
    if not discrete:
        with np.errstate(over="ignore", invalid="ignore"):  # too large: inf, outside the Box
            array = array.astype(space.dtype)
    try:
        ok = space.contains(array)
    except (TypeError, ValueError, OverflowError):
        ok = False
    return array.astype(space.dtype, copy=False) if ok else None


def _text_agents(names: Any) -> frozenset[str]:
    ok = not isinstance(names, (str, bytes)) and hasattr(names, "__iter__")
    require(ok, "text_agents", names, "None or a list of agent names")
    try:
        return frozenset(TaskType.parse(a).value for a in names)
    except (ValueError, TypeError, AttributeError):
        require(False, "text_agents", names,
                "None or a list of agent names: " + ", ".join(t.value for t in TaskType))


def _corpus(config: PlatformConfig):
    if not config.attach_tweets:
        return None
    return load_corpus()


def parallel_env(**kwargs: Any) -> OasisParallelEnv:
    """The native parallel env."""
    return OasisParallelEnv(**kwargs)


class _AECEnv(parallel_to_aec_wrapper):
    """``parallel_to_aec`` that checks each action at the step that receives it (PettingZoo's
    wrapper only steps the parallel env, and so checks, when the cycle's last agent acts)."""

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if not (self.terminations[agent] or self.truncations[agent]):
            self.env.check_action(agent, action)
        super().step(action)


def raw_env(**kwargs: Any):
    """The AEC form of the env (``parallel_to_aec`` with actions checked as they arrive)."""
    return wrappers.OrderEnforcingWrapper(_AECEnv(parallel_env(**kwargs)))


def env(**kwargs: Any):
    """The AEC env with PettingZoo's standard order-enforcing wrapper."""
    return wrappers.OrderEnforcingWrapper(raw_env(**kwargs))
