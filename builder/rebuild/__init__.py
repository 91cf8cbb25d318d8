"""Rebuild: keep layers fresh when upstream moves.

``rebuild`` re-resolves recipes and rebuilds (and publishes) only those whose
layer identity changed; ``schedule`` writes a CI workflow that runs it.
"""
