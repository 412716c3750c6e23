"""`workbench search` against bad input: spaces of the wrong JSON shape or size, truthy strings for
booleans, conditions that can never hold, ranges no run should take, repeated objectives, NaN bounds and
timeouts, a journal that is some other file, and a database port that never answers. Each is one
`workbench: error:` line (exit 2) or one ConfigError line, before any trial runs and before anything is
written to the storage."""

import json
import math
import os
import socket
import threading
import time

import pytest

optuna = pytest.importorskip("optuna")

from workbench import ConfigError, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from workbench.cli import main  # noqa: E402
from workbench.search import Choice, Float, Int, Space, load_study, open_storage, search, worker  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(120)]
TINY = RunConfig(model=ModelConfig(name="mlp"), train=TrainConfig(epochs=1)).replace(
    **{"measure.iters": 3, "measure.warmup": 1, "measure.batch_sizes": [64], "hardware.threads": 1}
)
WIDTH = {"model.width": {"float": [0.25, 1.0]}}
RUN = ["search", "run", "--model", "mlp", "--epochs", "1", "--no-progress"]


@pytest.fixture
def space_file(tmp_path) -> str:
    """A good space as a file, so a CLI check fails for its own reason, not for inline JSON."""
    path = tmp_path / "space.json"
    path.write_text(json.dumps(WIDTH))
    return str(path)


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text, text
    return text


def _refused(params, tmp_path, **kwargs) -> str:
    """The one line ``search`` refuses ``params`` with; nothing may have trained."""
    with pytest.raises(ConfigError) as e:
        search(Space(params), base=TINY, n_trials=2, store=tmp_path, progress=False, **kwargs)
    assert not (tmp_path / "results").exists()
    return _one_line(e.value)


def _cli(argv, tmp_path, capsys) -> str:
    """The one error line the command prints, with exit status 2, and no result stored."""
    code = main([*argv, "--store", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("workbench: error: ") and "\n" not in err, (code, err)
    assert not (tmp_path / "runs" / "results").exists()
    return err[len("workbench: error: ") :]


# 1. JSON of the wrong shape -------------------------------------------------------------------


@pytest.mark.parametrize(
    "space, message",
    [
        ([], 'A search space is a JSON object of the shape {"KEY": {"float": [low, high]}'),
        ("str", "A search space is a JSON object of the shape"),
        (
            {"train.lr": [0.01, 0.1]},
            'Search space \'train.lr\': write {"float": [low, high]}, {"int": [low, high]} or {"choice": [values]}',
        ),
        ({"train.lr": {"float": [0.01]}}, "'train.lr': \"float\" takes [low, high], two numbers (got [0.01])"),
        ({"train.lr": {"float": [0.01, 0.1, 0.2]}}, '"float" takes [low, high], two numbers'),
        (
            {"train.lr": {"float": [0.01, 0.1, 0.2, 0.3]}},
            '"float" takes [low, high], two numbers (got [0.01, 0.1, 0.2, 0.3])',
        ),
        ({"train.epochs": {"int": [1, 2, 3]}}, '"int" takes [low, high], two numbers'),
        ({"train.lr": {"float": 0.1}}, '"float" takes [low, high], two numbers (got 0.1)'),
        ({"train.lr": {"float": [0.01, 0.1], "lgo": True}}, '"float" takes log, step, when besides, not lgo'),
        ({"train.lr": {"float": [0.01, 0.1], "int": [1, 2]}}, 'give exactly one of "float", "int" or "choice"'),
        ({"train.lr": {}}, 'give exactly one of "float", "int" or "choice" (got none)'),
        ({"model.name": {"choice": "mlp"}}, "\"choice\" takes a list of values (got 'mlp')"),
    ],
)
def test_a_space_of_the_wrong_json_shape_is_one_line_naming_the_shape(space, message):
    with pytest.raises(ConfigError) as e:
        Space.from_dict(space)
    assert message in _one_line(e.value)


def test_a_space_file_of_the_wrong_shape_is_one_cli_line(tmp_path, capsys):
    path = tmp_path / "space.json"
    for space, message in [
        ([], "A search space is a JSON object"),
        ("str", "A search space is a JSON object"),
        ({"train.lr": {"float": [0.01, 0.1, 0.2, 0.3]}}, '"float" takes [low, high], two numbers'),
    ]:
        path.write_text(json.dumps(space))
        assert message in _cli([*RUN, "--space", str(path)], tmp_path, capsys)


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"model.name": Choice([["mlp"], "cnn"])},
            "has the choice ['mlp']: a choice is a finite number, text, true/false or null",
        ),
        ({"train.epochs": Int(True, 3)}, "'train.epochs' needs whole numbers"),
        ({"model.width": Float(0.25, 10**400)}, "'model.width' needs finite numbers"),
        ({"model.width": Float(0.25, 1.0, step=math.nan)}, "takes a finite number as step (got nan)"),
    ],
)
def test_parameters_optuna_cannot_store_or_python_cannot_compare_are_refused(params, message, tmp_path):
    assert message in _refused(params, tmp_path)


# 2. A --space file that never ends, or is no file -------------------------------------------------


def test_space_from_dev_zero_a_pipe_or_a_huge_file_is_refused_without_reading_it_all(tmp_path, capsys):
    assert _cli([*RUN, "--space", "/dev/zero"], tmp_path, capsys) == (
        "--space /dev/zero is not a regular file: give a JSON file, or inline JSON starting with {"
    )
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it would wait for a writer for ever
    assert "is not a regular file" in _cli([*RUN, "--space", str(fifo)], tmp_path, capsys)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (2 << 20))
    assert _cli([*RUN, "--space", str(big)], tmp_path, capsys) == (
        f"--space {big} is over 1 MiB: a JSON --space is a few hundred bytes; give a smaller one"
    )
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 500_000)
    assert "nests too deeply" in _cli([*RUN, "--space", str(deep)], tmp_path, capsys)


# 3. "log": "yes" / "false" ----------------------------------------------------------------------


@pytest.mark.parametrize("log", ["yes", "false", 1, None])
def test_log_takes_only_json_booleans(log):
    for kind, span in (("float", [0.01, 0.3]), ("int", [1, 8])):
        with pytest.raises(ConfigError) as e:
            Space.from_dict({"train.lr" if kind == "float" else "train.epochs": {kind: span, "log": log}})
        assert f'"log" takes true or false (got {log!r})' in _one_line(e.value)


def test_log_takes_only_booleans_in_python_too(tmp_path):
    assert "'train.lr' takes log=True or False (got 'false')" in _refused(
        {"train.lr": Float(0.01, 0.3, log="false")}, tmp_path
    )
    assert "'train.epochs' takes log=True or False (got 'yes')" in _refused(
        {"train.epochs": Int(1, 8, log="yes")}, tmp_path
    )


# 4. Conditions that can never hold ----------------------------------------------------------------


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"model.width": Choice([0.5, 1.0], when={"model.width": [0.5]})},
            "'model.width': its condition names 'model.width' itself: name a key written before it",
        ),
        (
            {
                "model.name": Choice(["mlp", "cnn"]),
                "model.width": Choice([0.5, 1.0], when={"model.name": ["resnet20"]}),
            },
            "its condition wants 'model.name' = 'resnet20', which 'model.name' never takes "
            "(its choices are ['mlp', 'cnn']), so 'model.width' would never be sampled",
        ),
        (
            {"train.epochs": Int(1, 3), "train.lr": Float(0.01, 0.1, when={"train.epochs": [5]})},
            "'train.epochs' never takes (it spans [1, 3] in steps of 1)",
        ),
        (
            {"model.width": Float(0.25, 1.0), "train.lr": Float(0.01, 0.1, when={"model.width": [0.5]})},
            "it is a continuous Float in [0.25, 1.0]: give it a step, or make it a Choice",
        ),
        (
            {"model.name": Choice(["mlp", "cnn"]), "model.width": Choice([0.5, 1.0], when={"model.name": []})},
            "its condition on 'model.name' takes a non-empty list of values",
        ),
        (
            {"model.name": Choice(["mlp", "cnn"]), "model.width": Choice([0.5, 1.0], when={"model.name": "mlp"})},
            "its condition on 'model.name' takes a non-empty list of values (got 'mlp')",
        ),
    ],
)
def test_a_condition_on_its_own_key_or_a_value_never_sampled_is_refused(params, message, tmp_path):
    assert message in _refused(params, tmp_path)


def test_a_condition_from_json_that_can_never_hold_is_refused_before_any_trial(tmp_path):
    space = Space.from_dict(
        {
            "model.name": {"choice": ["mlp", "cnn"]},
            "model.width": {"float": [0.25, 1.0], "when": {"model.name": ["vit"]}},
        }
    )
    assert "would never be sampled" in _refused(space.params, tmp_path)
    conditional = Space(
        {"model.name": Choice(["mlp", "cnn"]), "model.width": Float(0.25, 1.0, when={"model.name": ["mlp"]})}
    )
    conditional.check(TINY)  # a condition that can hold still passes


# 5. Ranges no run should take -------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"train.epochs": Int(1, 10**9)},
            "'train.epochs' reaches 1000000000: a search keeps train.epochs at most 1000",
        ),
        ({"train.epochs": Choice([1, 10**9])}, "'train.epochs' reaches 1000000000"),
        (
            {"compress.finetune": Choice(["none", "finetune"]), "compress.finetune.epochs": Int(1, 10**6)},
            "'compress.finetune.epochs' reaches 1000000",
        ),
        ({"data.augment.crop": Int(0, 10**6)}, "'data.augment.crop' reaches 1000000"),
        ({"measure.iters": Int(1, 10**9)}, "'measure.iters' reaches 1000000000"),
    ],
)
def test_ranges_past_what_a_search_should_run_are_refused_before_any_trial(params, message, tmp_path):
    assert message in _refused(params, tmp_path)


@pytest.mark.parametrize("params", [{"model.width": Float(0.25, 1e300)}, {"model.depth": Int(1, 10**9)}])
def test_model_sizes_no_machine_builds_are_refused_by_the_config_before_any_trial(params, tmp_path):
    # ModelConfig bounds width and depth; the search builds the config at each end of the range to ask it.
    key, param = next(iter(params.items()))
    message = _refused(params, tmp_path)
    assert message.startswith(f"Search space '{key}' = {param.high!r} is refused by the config: {key} must be")


def test_ranges_a_run_refuses_are_still_refused_and_sane_ones_pass():
    with pytest.raises(ConfigError, match=r"'train\.epochs' = -1 is refused by the config: train\.epochs must be >= 0"):
        Space({"train.epochs": Int(-1, 3)}).check(TINY)
    Space(
        {"train.epochs": Int(1, 1000), "model.width": Float(0.25, 2.0), "train.batch_size": Choice([32, 4096])}
    ).check(TINY)


# 6. Duplicate objectives ------------------------------------------------------------------------


def test_duplicate_objectives_are_refused(tmp_path, capsys, space_file):
    message = "The objectives name 'accuracy' twice: give each metric once, e.g. accuracy,size_bytes"
    assert _refused({"model.width": Float(0.5, 1.0)}, tmp_path, objectives=["accuracy", "accuracy"]) == message
    assert (
        _cli([*RUN, "--space", space_file, "--objectives", "accuracy,size_bytes,accuracy"], tmp_path, capsys) == message
    )


# 7. NaN or infinite constraints -----------------------------------------------------------------


@pytest.mark.parametrize("bound", ["nan", "inf", "-inf"])
def test_nan_or_infinite_constraints_are_refused(bound, tmp_path, capsys, space_file):
    assert _refused({"model.width": Float(0.5, 1.0)}, tmp_path, constraints={"size_bytes": float(bound)}) == (
        f"The constraint on size_bytes must be a finite number (got {float(bound)!r}), e.g. size_bytes=40000"
    )
    assert _cli([*RUN, "--space", space_file, "--constraint", f"size_bytes={bound}"], tmp_path, capsys) == (
        f"--constraint size_bytes={bound}: the bound must be a finite number, e.g. size_bytes=40000"
    )


def test_a_metric_bounded_twice_is_refused(tmp_path, capsys, space_file):
    assert (
        _cli(
            [*RUN, "--space", space_file, "--constraint", "size_bytes=1", "--constraint", "size_bytes=2"],
            tmp_path,
            capsys,
        )
        == "--constraint names size_bytes twice: give each metric one bound"
    )


# 8. Timeouts that are NaN, negative or zero ---------------------------------------------------------


@pytest.mark.parametrize("timeout", [math.nan, -1.0, math.inf])
def test_a_search_timeout_that_is_nan_negative_or_infinite_is_refused(timeout, tmp_path, capsys, space_file):
    message = (
        f"timeout must be a number of seconds >= 0 (0 makes the study and runs no trial; leave it out for no "
        f"limit), got {timeout!r}"
    )
    assert _refused({"model.width": Float(0.5, 1.0)}, tmp_path, timeout=timeout) == message
    assert _cli([*RUN, "--space", space_file, "--timeout", str(timeout)], tmp_path, capsys) == message


@pytest.mark.parametrize("timeout", [0.0, math.nan, -5.0])
def test_a_worker_timeout_that_is_zero_nan_or_negative_is_refused_before_the_study_is_opened(timeout, tmp_path, capsys):
    message = f"timeout must be a number of seconds > 0 (leave it out for no limit), got {timeout!r}"
    storage = f"sqlite:///{tmp_path / 'none.db'}"
    with pytest.raises(ConfigError) as e:
        worker("no-such-study", storage, store=tmp_path, timeout=timeout, progress=False)
    assert _one_line(e.value) == message
    assert (
        _cli(
            ["search", "worker", "--study", "no-such-study", "--storage", storage, "--timeout", str(timeout)],
            tmp_path,
            capsys,
        )
        == message
    )
    assert not (tmp_path / "none.db").exists()


# 9. A journal that is some other file ------------------------------------------------------------


def test_a_journal_storage_on_a_text_file_is_refused_and_the_file_left_byte_identical(tmp_path, capsys, space_file):
    (tmp_path / "j").mkdir()
    notes = tmp_path / "j" / "notes.txt"
    notes.write_bytes(b"my notes\nnot a journal\n")
    before = notes.read_bytes()
    message = (
        f"The study storage 'journal:{notes}' holds something other than an Optuna journal (its first line is "
        "not a journal record): give a new file or a study's journal; nothing was written to it"
    )
    store = tmp_path / "runs"
    assert _refused({"model.width": Float(0.5, 1.0)}, store, storage=f"journal:{notes}") == message
    for argv in ([*RUN, "--space", space_file], ["search", "show", "x"], ["search", "worker", "--study", "x"]):
        assert _cli([*argv, "--storage", f"journal:{notes}"], tmp_path, capsys) == message
    assert notes.read_bytes() == before and os.listdir(tmp_path / "j") == ["notes.txt"]  # no record, no lock file
    notes.write_bytes(b'{"a": 1}\n')  # JSON, but no journal record
    assert _cli(["search", "show", "x", "--storage", f"journal:{notes}"], tmp_path, capsys).startswith(
        "The study storage"
    )
    assert notes.read_bytes() == b'{"a": 1}\n'
    assert _cli(["search", "show", "x", "--storage", "journal:/dev/zero"], tmp_path, capsys) == (
        "The study storage 'journal:/dev/zero' is not a regular file: give a journal file (a new one is made)"
    )


def test_a_real_journal_still_opens(tmp_path):
    path = tmp_path / "studies.log"
    search(
        Space({"model.width": Float(0.5, 1.0)}),
        base=TINY,
        objectives=["accuracy"],
        n_trials=2,
        timeout=0,
        storage=f"journal:{path}",
        study_name="j",
        store=tmp_path,
        progress=False,
    )
    study, settings = load_study("j", f"journal:{path}")
    assert settings.objectives == ("accuracy",) and len(study.trials) == 1  # the baseline, enqueued


# 10. A database port that accepts and never answers -------------------------------------------------


@pytest.fixture
def silent_port():
    """A TCP port on 127.0.0.1 that accepts connections and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []

    def accept():
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


def test_a_database_port_that_never_answers_fails_within_the_connect_timeout(silent_port, monkeypatch):
    pytest.importorskip("psycopg")
    monkeypatch.setenv("WORKBENCH_STORAGE_TIMEOUT", "2")
    url = f"postgresql+psycopg://me:secret@127.0.0.1:{silent_port}/db"
    started = time.monotonic()
    with pytest.raises(ConfigError) as e:
        open_storage(url, None)
    assert time.monotonic() - started < 30
    message = _one_line(e.value)
    assert message.startswith(
        f"The study storage 'postgresql+psycopg://me:***@127.0.0.1:{silent_port}/db' did not answer "
        "within 2 s: check that a database server listens at that host and port"
    )
    assert "secret" not in message


def test_a_connect_timeout_that_is_not_seconds_is_refused(monkeypatch):
    monkeypatch.setenv("WORKBENCH_STORAGE_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="WORKBENCH_STORAGE_TIMEOUT must be a number of seconds > 0"):
        open_storage("postgresql+psycopg://me@127.0.0.1:1/db", None)


# 11. An unknown constraint metric ---------------------------------------------------------------


def test_an_unknown_constraint_metric_names_the_flag_the_closest_match_and_the_valid_ones(tmp_path, capsys, space_file):
    close = _cli([*RUN, "--space", space_file, "--constraint", "sizee=3"], tmp_path, capsys)
    assert close.startswith("Unknown metric for --constraint 'sizee'. Did you mean 'size_bytes'? Choose one of: ")
    bogus = _cli([*RUN, "--space", space_file, "--constraint", "bogus=3"], tmp_path, capsys)
    assert bogus.startswith("Unknown metric for --constraint 'bogus'. Choose one of: accuracy, ")
    assert "latency_ms" in bogus and "size_bytes" in bogus
    assert "write METRIC=NUMBER" in _cli([*RUN, "--space", space_file, "--constraint", "size_bytes"], tmp_path, capsys)


# 12. Inline JSON for --space --------------------------------------------------------------------


def test_inline_json_is_a_space_and_bad_inline_json_is_one_line(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    inline = '{"train.lr": {"float": [0.01, 0.1]}}'
    code = main(
        [
            *RUN,
            "--space",
            inline,
            "--timeout",
            "0",
            "--study",
            "inline",
            "--storage",
            storage,
            "--objectives",
            "accuracy",
            "--store",
            str(tmp_path / "runs"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    _, settings = load_study("inline", storage)
    assert settings.space.to_dict() == {"train.lr": {"float": [0.01, 0.1], "log": False}}
    assert _cli([*RUN, "--space", '{"train.lr": {"float": [0.01, 0.1]'], tmp_path, capsys).startswith(
        "--space (inline JSON) is not JSON (Expecting ',' delimiter"
    )
