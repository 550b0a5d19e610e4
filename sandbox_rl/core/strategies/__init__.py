"""The four evolution strategies; ``make_strategy`` picks one by its ``EvolutionStrategy``."""

from __future__ import annotations

from sandbox_rl.core.strategies.adaptive_compression import AdaptiveCompression
from sandbox_rl.core.strategies.base import Strategy
from sandbox_rl.core.strategies.gradient_based import GradientBased
from sandbox_rl.core.strategies.host import StrategyHost
from sandbox_rl.core.strategies.meta_learning import MetaLearning
from sandbox_rl.core.strategies.multi_model import MultiModel
from sandbox_rl.enums import EvolutionStrategy

STRATEGIES: dict[EvolutionStrategy, type[Strategy]] = {
    EvolutionStrategy.MULTI_MODEL: MultiModel,
    EvolutionStrategy.ADAPTIVE_COMPRESSION: AdaptiveCompression,
    EvolutionStrategy.GRADIENT_BASED: GradientBased,
    EvolutionStrategy.META_LEARNING: MetaLearning,
}


def make_strategy(kind: EvolutionStrategy | str, llm: StrategyHost) -> Strategy:
    return STRATEGIES[EvolutionStrategy(kind)](llm)


__all__ = ["STRATEGIES", "AdaptiveCompression", "GradientBased", "MetaLearning", "MultiModel",
           "Strategy", "StrategyHost", "make_strategy"]
