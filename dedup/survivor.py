"""The survivor rule shared by exact and near-duplicate removal: highest karma, then smallest doc_id.

What moves through the dedup shuffles instead of whole documents is a Member, (doc_id, karma): plain tuples make
deterministic Beam keys, and tuple order sorts by doc_id first.
"""
from __future__ import annotations

from typing import Iterable, Tuple

Member = Tuple[str, int]


def survivor_key(member) -> Tuple[int, str]:
    """Sort key of the survivor rule: highest karma first, then smallest doc_id."""
    if hasattr(member, "doc_id"):
        return -member.karma, member.doc_id
    return -member[1], member[0]


def pick_survivor(members: Iterable):
    """The one document of a duplicate group that is kept: highest karma, ties -> smallest doc_id.

    Accepts Documents (or anything with .doc_id/.karma) or (doc_id, karma) pairs; returns the same kind.
    """
    return min(members, key=survivor_key)
