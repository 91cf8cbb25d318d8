"""Where each box of a treemap goes: squarified rectangles, computed here so the page only draws them.

The page shows one directory at a time (the root first): its children laid
out over the whole view, and inside each child that is a directory, its own
children, smaller, below the child's name. So every directory is laid out
twice, by ``squarify`` (Bruls, Huizing and van Wijk's squarified treemaps):
over the view, for when it is the one shown (each child's ``view`` box),
and inside its own box in its parent's view (each child's ``inset`` box).
Clicking a box shows that directory, using the boxes already computed: the
page needs no layout code of its own, and every box's area is its bytes'
share of its directory's area.
"""

from __future__ import annotations

from dataclasses import dataclass

import squarify

from .tree import Node

WIDTH, HEIGHT = 1000.0, 640.0
HEADER = 15.0    # the strip of a directory's box that holds its name
PAD = 2.0
MIN_INSET = 12.0  # an inner area thinner than this shows no boxes inside

Box = tuple[float, float, float, float]  # x, y, width, height in the view's units


@dataclass
class Placed:
    """A node and where it is drawn: over its parent's view, and inside its parent's box in the grandparent's."""

    node: Node
    view: Box | None = None
    inset: Box | None = None
    children: list[Placed] | None = None


def lay_out(root: Node, width: float = WIDTH, height: float = HEIGHT) -> Placed:
    placed = _wrap(root)
    _place(placed, width, height)
    return placed


def _wrap(node: Node) -> Placed:
    children = None
    if node.is_dir:
        ordered = sorted(node.children.values(), key=lambda c: (-c.bytes, c.name))
        children = [_wrap(child) for child in ordered]
    return Placed(node, children=children)


def _place(placed: Placed, width: float, height: float) -> None:
    """Every directory's children over the view, then inside each child its own children (iteratively)."""
    pending = [placed]
    while pending:
        current = pending.pop()
        if not current.children:
            continue
        for child, box in zip(current.children, rectangles([c.node.bytes for c in current.children],
                                                           (0.0, 0.0, width, height))):
            child.view = box
        for child in current.children:
            if child.children and child.view:
                inner = inner_box(child.view)
                if inner:
                    for grandchild, box in zip(child.children,
                                               rectangles([g.node.bytes for g in child.children], inner)):
                        grandchild.inset = box
            pending.append(child)


def inner_box(box: Box) -> Box | None:
    """Where a directory's box shows its children: below its name, inside a small margin."""
    x, y, w, h = box
    inner = (x + PAD, y + HEADER, w - 2 * PAD, h - HEADER - PAD)
    return inner if inner[2] >= MIN_INSET and inner[3] >= MIN_INSET else None


def rectangles(sizes: list[int], area: Box) -> list[Box | None]:
    """One box per size (sorted biggest first, as ``lay_out`` gives them), None for an empty one."""
    x, y, w, h = area
    positive = [(i, s) for i, s in enumerate(sizes) if s > 0]
    out: list[Box | None] = [None] * len(sizes)
    if not positive or w <= 0 or h <= 0:
        return out
    values = squarify.normalize_sizes([s for _, s in positive], w, h)
    for (i, _), rect in zip(positive, _squarify(values, x, y, w, h)):
        out[i] = (rect["x"], rect["y"], rect["dx"], rect["dy"])
    return out


def _squarify(values: list[float], x: float, y: float, w: float, h: float) -> list[dict]:
    """``squarify.squarify``, one row at a time: the library recurses once per row, which a directory of
    hundreds of boxes would take past Python's recursion limit."""
    out: list[dict] = []
    while values:
        if w <= 1e-9 or h <= 1e-9:  # the float rounding of many rows left no room: the rest are not drawn
            break
        if len(values) == 1:
            out.extend(squarify.layout(values, x, y, w, h))
            break
        i = 1
        while i < len(values) and (squarify.worst_ratio(values[:i], x, y, w, h)
                                   >= squarify.worst_ratio(values[:i + 1], x, y, w, h)):
            i += 1
        row, values = values[:i], values[i:]
        out.extend(squarify.layout(row, x, y, w, h))
        x, y, w, h = squarify.leftover(row, x, y, w, h)
    return out
