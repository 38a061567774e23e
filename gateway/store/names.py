"""Readable names for runs created without one (MLflow gives every run a name)."""

from __future__ import annotations

import random

_ADJECTIVES = (
    "amber", "bold", "brisk", "calm", "clever", "crisp", "daring", "eager", "fair", "gentle",
    "glad", "grand", "happy", "keen", "lively", "lucky", "mellow", "merry", "nimble", "noble",
    "placid", "proud", "quick", "quiet", "rapid", "sleek", "smooth", "steady", "sunny", "swift",
    "tidy", "vivid", "warm", "wise", "witty", "zesty",
)
_NOUNS = (
    "badger", "bee", "bison", "crane", "deer", "dove", "eagle", "falcon", "finch", "fox",
    "gecko", "hare", "heron", "ibis", "koala", "lark", "lemur", "lynx", "mole", "moose",
    "newt", "otter", "owl", "panda", "puffin", "quail", "raven", "robin", "seal", "shrew",
    "stork", "swan", "tern", "tiger", "trout", "wolf", "wren", "yak", "zebra",
)


def random_run_name() -> str:
    """A name like ``steady-otter-421``, at most 20 characters."""
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randrange(1000)}"[:20]
