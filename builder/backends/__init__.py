"""Backends install a recipe's stack for one target into a directory tree.

Every backend resolves the recipe's requirements to wheels the target runtime
can load (a ``Lock``) and installs exactly those into a tree laid out as the
layer's ``python/`` directory, inside a ``Session`` that also runs the
strip, bytecode and smoke-test stages where the backend builds: on this
machine (pip) or in a Lambda-like container (docker). Measuring and zipping
happen after, the same whichever backend built the tree.
"""

from .base import Backend, Lock, LockedWheel, Resolution, Session, Target

__all__ = ["Backend", "Lock", "LockedWheel", "Resolution", "Session", "Target"]
