"""Modules that run inside Lambda, shipped in a layer when a recipe asks (``[include]``).

They are copied into the layer as the package ``layer_runtime``; they may
use only the standard library and boto3 (which Lambda's Python runtimes
provide), and must run on every Python a recipe can target (3.6 and later).
"""
