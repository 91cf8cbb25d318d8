"""Eager unpacking of a packed layer: ``import layer_runtime.unpack`` unpacks and installs it now.

Importing this module runs ``layer_runtime._unpack.install()``: the archive is
unpacked into /tmp (unless this execution environment already did it), the
unpacked root goes on sys.path and the packed modules import from it. ``ROOT``
is that root.

Without it, the first import of a packed module does the same work, at
whatever point the function first imports it. Import this module at the top
of the handler's module instead when the unpack should happen during init:
with SnapStart, whose snapshot of memory and disk is taken after init, so
restored environments start with the tree unpacked (SnapStart allows no more
than 512 MB of ephemeral storage, which the unpacked tree must fit in); and
for code that reads the packed distributions' metadata (``importlib.metadata``)
or walks sys.path before it imports a packed module.
"""

from layer_runtime._unpack import install

ROOT = install()
