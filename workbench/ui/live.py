"""Training callbacks that draw into widgets: a progress bar and a live loss/accuracy chart.

Both redraw from the training loop's own thread (training runs synchronously in the cell), so the
output lands in the right place under ipykernel 7, papermill and static renderings alike.
"""

from __future__ import annotations

import ipywidgets as widgets
from IPython import get_ipython
from IPython.display import clear_output, display

from ..report.charts import run_history_chart
from ..train import Callback


def show(out: widgets.Output, *objects) -> None:
    """Replace what ``out`` shows; ``wait=True`` keeps the old picture until the new one arrives (no flicker).
    Outside IPython there is nowhere to show it, and ``display`` would print reprs to stdout instead."""
    if get_ipython() is None:
        return
    with out:
        clear_output(wait=True)
        display(*objects)


class LiveCurve(Callback):
    """Redraws the run's loss and accuracy per epoch into ``out`` at every epoch end.

    Example:
        >>> curve = LiveCurve(widgets.Output())
        >>> curve.figure is None
        True
    """

    def __init__(self, out: widgets.Output, title: str = "", theme: str | None = None):
        self.out, self.title, self.theme = out, title, theme
        self.figure = None  # the latest drawing, kept for tests and for saving

    def on_train_start(self, state):
        self.history = list(state.history)  # non-empty when resuming

    def on_epoch_end(self, state, record):
        self.history.append(record)
        self._draw()

    def replay(self, history: list[dict]) -> None:
        """Draw a finished training's curves at once (a run that reused another run's training)."""
        self.history = list(history)
        self._draw()

    def _draw(self) -> None:
        self.figure = run_history_chart(self.history, title=self.title, theme=self.theme)
        show(self.out, self.figure)


class ProgressWidget(Callback):
    """Drives an ``IntProgress`` over all training steps and a label with the last epoch's numbers.

    Example:
        >>> bar, label = widgets.IntProgress(), widgets.Label()
        >>> ProgressWidget(bar, label).bar is bar
        True
    """

    UPDATES_PER_RUN = 200  # more front-end messages than this only slow the kernel down

    def __init__(self, bar: widgets.IntProgress, label: widgets.Label):
        self.bar, self.label = bar, label

    def on_train_start(self, state):
        self.bar.max = max(1, state.epochs * state.steps_per_epoch)
        self.bar.value, self.bar.bar_style = state.step, "info"
        self.every = max(1, self.bar.max // self.UPDATES_PER_RUN)
        self.label.value = f"training: {state.epochs} epochs of {state.steps_per_epoch} steps"

    def on_batch_end(self, state):
        if state.step % self.every == 0:
            self.bar.value = state.step

    def on_epoch_end(self, state, record):
        self.bar.value = state.step
        acc = record.get("test_accuracy")
        self.label.value = f"epoch {record['epoch']}/{state.epochs}: train loss {record['train_loss']:.3f}" + (
            "" if acc is None else f", test accuracy {acc:.1%}"
        )

    def on_train_end(self, state):
        self.bar.value = self.bar.max if not state.stop else self.bar.value
        self.bar.bar_style = "warning" if state.stop else "success"
        self.label.value += " — evaluating and measuring…"
