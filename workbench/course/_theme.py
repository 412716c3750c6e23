"""The look the package's HTML shares: the tour's report and the notebook site (its index and the bar
on top of every notebook page), so that they read as one product.

The colours are named once here; ``THEME_CSS`` styles a whole page of the package's own, ``SITE_CSS``
the site's bar and index rows. A notebook page keeps nbconvert's JupyterLab styles for the notebook
itself, so it gets ``SITE_CSS`` only, whose rules are scoped to the site's own classes.
"""

from __future__ import annotations

FONT = "sans-serif"
RULE = "#ccc"  # table borders, the bar's edge
SHADE = "#f3f3f3"  # table headers, the bar
MUTED = "#666"  # secondary text: a metric's name, a notebook's file name
WARN_FILL, WARN_RULE = "#fff3cd", "#e0c36b"  # a busy machine's note

THEME_CSS = (
    f"body{{font-family:{FONT};max-width:1100px;margin:2em auto}} table{{border-collapse:collapse;font-size:13px}}\n"
    f"td,th{{border:1px solid {RULE};padding:3px 6px;text-align:right}} th{{background:{SHADE}}} "
    "img{max-width:100%}\n"
    f".noise{{background:{WARN_FILL};border:1px solid {WARN_RULE};padding:.6em}}"
)

SITE_CSS = (
    f".wb-bar{{font-family:{FONT};font-size:13px;background:{SHADE};border:1px solid {RULE};padding:6px 10px;"
    "margin:0 0 1em;display:flex;flex-wrap:wrap;gap:4px 18px;align-items:baseline}\n"
    ".wb-bar a{color:inherit} .wb-bar .wb-here{font-weight:bold}\n"
    f".wb-muted{{color:{MUTED}}} td.wb-left,th.wb-left{{text-align:left}} "
    ".wb-metric{white-space:nowrap;margin-right:1em}\n"
    f".wb-widget-note{{font-family:{FONT};font-size:13px;color:{MUTED};border-left:3px solid {RULE};padding-left:8px}}"
)
