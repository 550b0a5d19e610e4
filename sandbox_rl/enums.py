"""Enumerations shared by every layer (envs, agents, training, core)."""

from __future__ import annotations

from enum import Enum


class TaskType(str, Enum):
    """The five task roles; each is one PettingZoo agent of the Oasis env."""

    CONTENT_GENERATION = "content_generation"
    BEHAVIOR_ANALYSIS = "behavior_analysis"
    NETWORK_OPTIMIZATION = "network_optimization"
    TREND_PREDICTION = "trend_prediction"
    USER_ENGAGEMENT = "user_engagement"

    @classmethod
    def parse(cls, value: "TaskType | str") -> "TaskType":
        """Accept an enum member or its string value; a bad value raises ValueError naming it."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            choices = ", ".join(t.value for t in cls)
            raise ValueError(f"unknown task {value!r}; expected one of {choices}") from None


class EvolutionStrategy(str, Enum):
    """How the meta-controller improves the LLM agents."""

    MULTI_MODEL = "multi_model"
    ADAPTIVE_COMPRESSION = "adaptive_compression"
    GRADIENT_BASED = "gradient_based"
    META_LEARNING = "meta_learning"
