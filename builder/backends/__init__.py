"""Backends install a recipe's stack for one target into a directory tree.

Every backend resolves the recipe's requirements to wheels the target runtime
can load (a ``Lock``) and installs exactly those into a tree laid out as the
layer's ``python/`` directory. Stripping, verifying, measuring and zipping
happen after, the same whichever backend installed the tree.
"""

from .base import Backend, Lock, LockedWheel, Resolution, Target

__all__ = ["Backend", "Lock", "LockedWheel", "Resolution", "Target"]
