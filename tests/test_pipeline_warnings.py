"""A warning meant for the user names the user's own line, however deep the pipeline raised it: from
``run``, ``run_many``, ``sweep``, a helper of the user's around ``run``, and from inside training."""

import sys
import warnings
from contextlib import contextmanager

from workbench import MeasureConfig, ModelConfig, RunConfig, TrainConfig, run, run_many, sweep
from workbench.compress import StructuredPrune
from workbench.train import Callback

# Pruning nine channels in ten of a 1-epoch MLP loses far more than COMPRESSION_LOSS_POINTS: it always warns.
LOSSY = RunConfig(
    model=ModelConfig(name="mlp"),
    train=TrainConfig(epochs=1),
    measure=MeasureConfig(batch_sizes=(1,), iters=2, warmup=1),
    compress=(StructuredPrune(amount=0.9),),
).replace(**{"hardware.threads": 1})


def _next_line() -> int:
    """The line after the caller's: where the call under test stands."""
    return sys._getframe(1).f_lineno + 1


@contextmanager
def _recording():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def _assert_named(caught: list, about: str, line: int) -> None:
    """Every warning whose message has ``about`` names this file at ``line``, and there is one."""
    ours = [w for w in caught if about in str(w.message)]
    assert ours, f"no warning about {about!r}"
    assert {(w.filename, w.lineno) for w in ours} == {(__file__, line)}


def test_a_warning_from_run_names_the_line_that_called_run():
    with _recording() as caught:
        line = _next_line()
        run(LOSSY, store=None, progress=False)
    _assert_named(caught, "compression cost", line)


def test_a_warning_from_run_many_names_the_line_that_called_run_many():
    with _recording() as caught:
        line = _next_line()
        run_many([LOSSY], store=None, progress=False)
    _assert_named(caught, "compression cost", line)


def test_a_warning_from_sweep_names_the_line_that_called_sweep():
    with _recording() as caught:
        line = _next_line()
        sweep(LOSSY, "train.seed", [0], store=None, progress=False)
    _assert_named(caught, "compression cost", line)


def _users_own_helper(config: RunConfig) -> int:
    """A helper of the user's own around ``run``: the warning names the line in here, not its caller's."""
    line = _next_line()
    run(config, store=None, progress=False)
    return line


def test_a_warning_from_a_run_inside_the_users_helper_names_the_helpers_line():
    with _recording() as caught:
        line = _users_own_helper(LOSSY)
    _assert_named(caught, "compression cost", line)


class _StopAfterOneEpoch(Callback):
    def on_epoch_end(self, state, record):
        state.stop = "enough"


def test_a_warning_from_inside_training_names_the_line_that_called_run():
    config = LOSSY.replace(compress=(), **{"train.epochs": 2})
    with _recording() as caught:
        line = _next_line()
        run(config, store=None, progress=False, callbacks=[_StopAfterOneEpoch()])
    _assert_named(caught, "Training stopped early: enough", line)
