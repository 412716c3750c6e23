"""The ``workbench`` command: run, tour, doctor, datasets, models, notebooks, results.

``workbench run`` has a flag for every ``RunConfig`` field, generated from the dataclasses, so a new
config field is a new flag with no change here.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
import warnings
from pathlib import Path
from typing import Any, Sequence

from ._errors import ConfigError, one_line
from ._registry import unknown_name_error
from .compress import parse_step, read_value
from .config import RunConfig, field_paths
from .results import COMPARE_METRICS, METRICS, format_number

# Flags whose name is not simply the field's last path component (which would clash or read badly).
_FLAG_NAMES = {
    "model.name": "model",
    "measure.device": "measure-device",
    "measure.warmup": "measure-warmup",
    "measure.iters": "measure-iters",
    "measure.batch_sizes": "measure-batch-sizes",
    "measure.modes": "measure-modes",
    "distill.teacher": "distill-teacher",
    "distill.alpha": "distill-alpha",
    "distill.temperature": "distill-temperature",
}
_SKIP = {"compress"}  # has its own repeatable --compress flag


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (the usage text is one --help away)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"workbench: error: {message} (see {self.prog} --help)\n")


def _comma_list(item: type):
    def parse(text: str) -> tuple:
        return tuple(item(v) for v in text.split(",") if v)

    parse.__name__ = f"comma-separated {item.__name__}"  # argparse names the type in its message
    return parse


def _leaf_types() -> dict[str, Any]:
    """dotted path -> (type hint, default) for every leaf field of RunConfig."""
    out = {}

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            path = f"{prefix}{f.name}"
            sub = hints[f.name]
            if dataclasses.is_dataclass(sub):
                walk(sub, path + ".")
            else:
                out[path] = sub

    walk(RunConfig, "")
    return out


def _flag(path: str) -> str:
    return "--" + _FLAG_NAMES.get(path, path.rsplit(".", 1)[-1]).replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    types = _leaf_types()
    defaults = RunConfig().flat()
    for path in field_paths():
        if path in _SKIP:
            continue
        hint, default = types[path], defaults[path]
        kw: dict[str, Any] = {"dest": path, "default": argparse.SUPPRESS, "help": f"{path} (default: {default})"}
        if hint is bool:
            parser.add_argument(_flag(path), action=argparse.BooleanOptionalAction, **kw)
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            parser.add_argument(_flag(path), type=_comma_list(item), metavar="A,B", **kw)
        else:
            scalar = next((t for t in typing.get_args(hint) if t is not type(None)), hint) if typing.get_args(hint) else hint
            parser.add_argument(_flag(path), type=scalar, **kw)
    parser.add_argument("--augment", help="shorthand: none, or e.g. flip,crop=4,cutout=8,rotate=10,translate=2")
    parser.add_argument(
        "--compress", action="append", default=[], metavar="KIND[:k=v,...]",
        help="a compression step, repeatable and applied in order, e.g. prune_structured:amount=0.5 finetune:epochs=2",
    )
    parser.add_argument("--config", type=Path, help="start from a saved RunConfig JSON file; flags override it")
    parser.add_argument("--from", dest="from_run", metavar="RUN_ID",
                        help="start from a stored run: its config, flags override it; its training is reused "
                             "when the training flags are left alone (e.g. --from RUN_ID --compress static_int8)")


def _augment(spec: str) -> dict[str, Any]:
    out: dict[str, Any] = {"flip": False, "crop": 0, "translate": 0, "cutout": 0, "rotate": 0.0}
    if spec == "none":
        return out
    defaults = {"flip": True, "crop": 4, "translate": 2, "cutout": 8, "rotate": 10.0}
    for item in filter(None, spec.split(",")):
        key, eq, raw = item.partition("=")
        if key not in defaults:
            raise unknown_name_error("augmentation", key, defaults)
        out[key] = read_value(raw, type(defaults[key]), f"augment.{key}") if eq else defaults[key]
    return out


def config_from_args(args: argparse.Namespace) -> RunConfig:
    if getattr(args, "from_run", None):
        from .results import ResultStore

        cfg = ResultStore(args.store).get(args.from_run).config.replace(name="")
    elif getattr(args, "config", None):
        cfg = _config_file(args.config)
    else:
        cfg = RunConfig()
    changes = {k: v for k, v in vars(args).items() if "." in k or k == "name"}
    if args.augment:
        changes.update({f"data.augment.{k}": v for k, v in _augment(args.augment).items()})
    if args.compress:
        changes["compress"] = [parse_step(s) for s in args.compress]
    return cfg.replace(**changes) if changes else cfg


def _config_file(path: Path) -> RunConfig:
    """The RunConfig saved in ``path`` (JSON), or one line saying what is wrong with the file."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: cannot read it ({one_line(e)})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config {path} is not a RunConfig JSON file ({e.msg} at line {e.lineno}): "
                          "write one with `workbench run ... --print-config > FILE` or the panel's Save") from None
    try:
        return RunConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"--config {path}: {e}") from None


def _print_result(result, as_json: bool) -> None:
    if as_json:
        print(json.dumps({**result.to_dict(), "row": {k: v for k, v in result.row().items() if k != "created"}}, default=str))
        return
    row = result.row()
    lines = [(k, row.get(k)) for k in ("run_id", "name", "status")]
    lines += [(METRICS[k].axis_label, _shown(row[k] * METRICS[k].scale if row[k] is not None else None))
              for k in ("accuracy", "loss", *COMPARE_METRICS[1:], "train_ips") if k in row]
    lines += [("measured on", row.get("measure_device_name")), ("trained on", row.get("train_device"))]
    if result.reused_from:
        lines.append(("reused the training of", result.reused_from))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k:<{width}}  {v}")


def _shown(value: Any) -> str:
    return format_number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="workbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_run = sub.add_parser("run", help="train, compress, evaluate and measure one config; store the result")
    _add_config_flags(p_run)
    p_run.add_argument("--json", action="store_true", help="print the result as JSON")
    p_run.add_argument("--store", default="runs", help="results folder (default: runs)")
    p_run.add_argument("--no-progress", action="store_true")
    p_run.add_argument("--print-config", action="store_true", help="print the config as JSON and exit")
    p_run.add_argument("--no-reuse", action="store_true", help="train even if the store holds the same training")
    p_run.add_argument("--no-resume", action="store_true",
                       help="start training from the first epoch even if an interrupted run left a checkpoint")

    p_tour = sub.add_parser("tour", help="the main job: baseline + contrasting variants on digits, and a report")
    p_tour.add_argument("--out", default="runs", help="results folder (default: runs)")
    p_tour.add_argument("--dataset", default="digits")
    p_tour.add_argument("--epochs", type=int, default=None, help="override the tour's epochs (default: its own, 6)")

    sub.add_parser("doctor", help="check this environment and print one fix per problem")

    p_ds = sub.add_parser("datasets", help="list datasets or pre-download one for offline use")
    ds_sub = p_ds.add_subparsers(dest="ds_command", required=True)
    ds_sub.add_parser("list")
    p_fetch = ds_sub.add_parser("fetch")
    p_fetch.add_argument("names", nargs="+")
    p_fetch.add_argument("--root", default="data")

    sub.add_parser("models", help="list the registered models")

    p_nb = sub.add_parser("notebooks", help="execute notebooks headless (papermill)")
    nb_sub = p_nb.add_subparsers(dest="nb_command", required=True)
    p_nbrun = nb_sub.add_parser("run")
    p_nbrun.add_argument("names", nargs="*", help="notebook names or prefixes (default: all)")
    p_nbrun.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"))
    p_nbrun.add_argument("--out", default="runs/notebooks")
    p_nbrun.add_argument("--smoke", action="store_true", help="use each notebook's small smoke parameters")

    p_res = sub.add_parser("results", help="show stored results")
    p_res.add_argument("--store", default="runs")
    p_res.add_argument("--baseline", default=None, help="compare against this run id or name")

    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            return _dispatch(args)
        except (ValueError, OSError, KeyError, RuntimeError, ImportError) as e:  # ConfigError is a ValueError
            message = str(e.args[0] if isinstance(e, KeyError) and e.args else e).strip().splitlines() or [type(e).__name__]
            print(f"workbench: error: {message[0]}", file=sys.stderr)
            return 2


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings reach a command-line user as one line, without the source line Python would quote."""
    print(f"workbench: warning: {message}", file=sys.stderr)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        cfg = config_from_args(args)
        if args.print_config:
            print(cfg.to_json(indent=1))
            return 0
        from .pipeline import preflight, run

        check = preflight(cfg, store=args.store)
        for note in check.notes:
            print(f"workbench: note: {note}", file=sys.stderr)
        if check.problems:
            raise ConfigError(check.problems[0])
        result = run(cfg, store=args.store, progress=not args.no_progress and not args.json, reuse=not args.no_reuse,
                     resume=not args.no_resume)
        _print_result(result, args.json)
        return 0 if result.status == "ok" else 1
    if args.command == "tour":
        from .tour import tour

        print(tour(out=args.out, dataset=args.dataset, epochs=args.epochs))
        return 0
    if args.command == "doctor":
        from .doctor import doctor, format_report

        checks = doctor()
        print(format_report(checks))
        return 0 if all(c.ok for c in checks) else 1
    if args.command == "datasets":
        from .data import fetch_dataset, list_datasets

        if args.ds_command == "list":
            print("\n".join(list_datasets()))
        else:
            for name in args.names:
                print(f"{name}: {fetch_dataset(name, root=args.root)}")
        return 0
    if args.command == "models":
        from .models import list_models

        print("\n".join(list_models()))
        return 0
    if args.command == "notebooks":
        from .notebooks import run_notebooks

        for path in run_notebooks(args.names, dict(args.parameter), out=args.out, smoke=args.smoke):
            print(path)
        return 0
    if args.command == "results":
        import pandas as pd

        from .results import ResultStore, compare

        df = ResultStore(args.store).frame()
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(compare(df, baseline=args.baseline if args.baseline is not None else 0) if len(df) else "no results yet")
        return 0
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
