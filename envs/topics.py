"""The named topics of the simulated platform.

Every post carries a distribution over these topics and every user an interest vector over them.
The descriptions are what the sentence-embedding model compares a post's text with, so an
LLM's post lands on the topics its words are about.
"""

from __future__ import annotations

from typing import NamedTuple


class Topic(NamedTuple):
    name: str
    description: str


TOPICS: tuple[Topic, ...] = (
    Topic("politics", "politics, elections, government, policy, news and public debate"),
    Topic("technology", "technology, software, AI, gadgets, phones, computers and the internet"),
    Topic("sports", "sports, football, basketball, games, teams, players and matches"),
    Topic("entertainment", "movies, music, TV shows, celebrities, concerts and the band"),
    Topic("science", "science, research, space, discoveries, nature and the climate"),
    Topic("health", "health, fitness, medicine, diet, sleep and feeling sick"),
    Topic("business", "business, money, jobs, work, economy, markets and shopping"),
    Topic("lifestyle", "food, travel, fashion, weekend plans, coffee and home life"),
    Topic("relationships", "friends, family, love, relationships, feelings and personal life"),
    Topic("humor", "jokes, memes, funny moments, LOL and sarcasm"),
)

TOPIC_NAMES: tuple[str, ...] = tuple(t.name for t in TOPICS)
NUM_TOPICS = len(TOPICS)


def topic_index(name: str) -> int:
    """Index of a topic by name (case-insensitive); raises ValueError naming the unknown topic."""
    key = name.strip().lower()
    for i, n in enumerate(TOPIC_NAMES):
        if n == key:
            return i
    raise ValueError(f"unknown topic {name!r}; expected one of {', '.join(TOPIC_NAMES)}")
