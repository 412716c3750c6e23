"""ipywidgets panels over the package: controls edit a ``RunConfig``, charts show the results.

Needs the notebook extras; importing ``workbench`` alone does not.
"""
try:
    import ipywidgets  # noqa: F401
except ImportError as e:  # an optional dependency fails late and says what to install (STYLE 7)
    raise ImportError("The Workbench panel needs ipywidgets: pip install 'workbench[notebooks]'") from e

from .code import config_code, run_code
from .live import LiveCurve, ProgressWidget
from .panel import Workbench

__all__ = ["Workbench", "LiveCurve", "ProgressWidget", "config_code", "run_code"]
