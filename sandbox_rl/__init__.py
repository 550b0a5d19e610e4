"""Self-Evolving Oasis: a social-platform RL environment with self-evolving LLM agents.

Importing the package registers the Gymnasium env ``SelfEvolvingOasis-v0`` (nothing else
happens at import: no models load, no folders are created).
"""

from sandbox_rl.enums import EvolutionStrategy, TaskType
from sandbox_rl.envs.registration import register_envs

__version__ = "0.1.0"
__all__ = ["EvolutionStrategy", "TaskType", "__version__"]

register_envs()
