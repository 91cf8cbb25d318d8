"""Where the megabytes go, as a picture: self-contained HTML pages of layers, of two layers, of a plan.

``tree`` reads what a layer holds (its zip, a packed layer's archive, the
build report's record of the installed tree and what each strip rule took)
into trees of files and condenses them; ``layout`` places their boxes with
``squarify``; ``page`` writes the HTML (bars, verdicts, tables, the trees as
JSON) and ``script`` is the page's one inline script, which draws and zooms.
``build`` writes a layer's page beside its report; the CLI's ``report``,
``diff`` and ``plan`` write one with ``--html``.
"""

from .page import MAX_PAGE_BYTES, check_out, diff_page, layer_page, plan_page, write_page
from .tree import strip_ledger

__all__ = ["MAX_PAGE_BYTES", "check_out", "diff_page", "layer_page", "plan_page", "strip_ledger", "write_page"]
