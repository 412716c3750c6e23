"""ipywidgets panels over the package: controls edit a ``RunConfig``, charts show the results.

Needs the notebook extras; importing ``workbench`` alone does not.
"""

from .._errors import require_modules

require_modules(["ipywidgets"], "The Workbench panel", "pip install 'workbench[notebooks]'")

from .code import config_code, run_code, search_code  # noqa: E402  (after the check: these import ipywidgets)
from .live import LiveCurve, ProgressWidget  # noqa: E402
from .panel import Workbench  # noqa: E402
from .search_tab import SearchTab  # noqa: E402

__all__ = ["LiveCurve", "ProgressWidget", "SearchTab", "Workbench", "config_code", "run_code", "search_code"]
