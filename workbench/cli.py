"""The workbench command: run, tour, search, doctor, datasets, models, notebooks, results.

``workbench run`` has a flag for every ``RunConfig`` field, generated from the dataclasses (help text,
unit and choices from each field's ``setting()``), so a new config field is a new flag with no
change here. Only ``run`` builds those flags: ``workbench --help`` imports neither torch nor pandas.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._errors import ConfigError, one_line
from ._files import writable_problem

DESCRIPTION = (
    "Make deep-learning models faster, smaller and cheaper: train, compress, measure and compare runs; "
    "every result is a row in a store (runs/ by default)."
)
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
    "parallel.strategy": "parallel",  # --strategy is the search's
}
_SKIP = {"compress"}  # has its own repeatable --compress flag
RESULT_FORMATS = ("table", "csv", "json", "markdown")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (the usage text is one --help away)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"workbench: error: {message} (see {self.prog} --help)\n")


def main(argv: Sequence[str] | None = None, *, raise_errors: bool = False) -> int:
    """The command line; ``raise_errors`` lets an error through instead of printing it (a torchrun rank
    reports its own)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, subparsers = _parser(with_run_flags=argv[:1] == ["run"] or argv[:2] == ["search", "run"])
    args = parser.parse_args(argv)
    args.argv = argv
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            return _dispatch(args, subparsers)
        except (ValueError, OSError, KeyError, RuntimeError, ImportError) as e:  # ConfigError is a ValueError
            if raise_errors:
                raise
            message = str(e.args[0] if isinstance(e, KeyError) and e.args else e).strip().splitlines() or [
                type(e).__name__
            ]
            print(f"workbench: error: {message[0]}", file=sys.stderr)
            return 2


def _parser(with_run_flags: bool) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _Parser(prog="workbench", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    p: dict[str, argparse.ArgumentParser] = {}

    p["run"] = sub.add_parser(
        "run",
        help="train, compress, evaluate and measure one config; store the result",
        description="Train, compress, evaluate and measure one config and store its row. "
        "Every RunConfig field is a flag; unset flags keep their defaults.",
    )
    if with_run_flags:
        _add_config_flags(p["run"])
    p["run"].add_argument("--json", action="store_true", help="print the result as JSON")
    p["run"].add_argument("--store", default="runs", help="results folder (default: runs)")
    p["run"].add_argument("--no-progress", action="store_true", help="no progress bar")
    p["run"].add_argument("--print-config", action="store_true", help="print the config as JSON and exit")
    p["run"].add_argument("--no-reuse", action="store_true", help="train even if the store holds the same training")
    p["run"].add_argument(
        "--no-resume",
        action="store_true",
        help="start training from the first epoch even if an interrupted run left a checkpoint",
    )
    # Where the processes of a data-parallel run (--nproc N, --nnodes M) meet: the launch, not the experiment.
    p["run"].add_argument(
        "--node-rank", type=int, default=0, help="this machine's place among --nnodes machines (default: 0)"
    )
    p["run"].add_argument(
        "--rdzv-endpoint",
        default="",
        metavar="HOST:PORT",
        help="node 0's address and a free port, where the machines of a --nnodes > 1 run meet",
    )
    p["run"].add_argument(
        "--print-launch",
        action="store_true",
        help="print the torchrun command this machine would run for --nproc/--nnodes, and exit",
    )

    p["generate"] = sub.add_parser(
        "generate",
        help="continue a prompt with a stored language-model run, streaming the text",
        description="Write text with a language-model run (workbench run --task lm): the new text is printed "
        "as it is generated.",
    )
    p["generate"].add_argument("run_id", help="the stored run (workbench results lists them)")
    p["generate"].add_argument("--prompt", default="def ", help="the text to continue (default: 'def ')")
    p["generate"].add_argument("--max-new-tokens", type=int, default=200, help="tokens to add (default: 200)")
    p["generate"].add_argument(
        "--temperature",
        type=float,
        default=None,
        help="0: always the likeliest token; higher: more varied (default 0.8; 0 with --draft, which is greedy)",
    )
    p["generate"].add_argument("--top-k", type=int, default=None, help="sample among the k likeliest tokens only")
    p["generate"].add_argument("--top-p", type=float, default=None, help="sample among the fewest tokens reaching p")
    p["generate"].add_argument("--seed", type=int, default=None, help="repeat a draw")
    p["generate"].add_argument("--no-kv-cache", action="store_true", help="recompute every step (slower, same text)")
    p["generate"].add_argument(
        "--draft", metavar="RUN_ID", help="a smaller run with the same tokenizer: speculative decoding (greedy)"
    )
    p["generate"].add_argument("--lookahead", type=int, default=4, help="tokens the draft proposes per check (4)")
    p["generate"].add_argument("--store", default="runs", help="results folder (default: runs)")

    p["tour"] = sub.add_parser("tour", help="the main job: a baseline and contrasting variants on digits, and a report")
    p["tour"].add_argument("--out", default="runs", help="results folder (default: runs)")
    p["tour"].add_argument("--dataset", default="digits", help="dataset name or folder:PATH (default: digits)")
    p["tour"].add_argument("--epochs", type=int, default=None, help="epochs per variant (default: the tour's own, 6)")

    _add_deploy_parsers(sub, p)
    _add_search_parsers(sub, p, with_run_flags)

    sub.add_parser("doctor", help="check this environment and print one fix per problem")

    p["datasets"] = sub.add_parser("datasets", help="list the datasets, or download some ahead of time for offline use")
    ds = p["datasets"].add_subparsers(dest="ds_command", parser_class=_Parser, metavar="list|fetch")
    ds.add_parser("list", help="the dataset names")
    fetch = ds.add_parser("fetch", help="download and verify datasets into ROOT/downloads")
    fetch.add_argument("names", nargs="+", help="dataset names, e.g. cifar10 mnist fashion-mnist")
    fetch.add_argument("--root", default="data", help="data folder (default: data)")

    sub.add_parser("models", help="list the registered models")

    p["notebooks"] = sub.add_parser("notebooks", help="execute notebooks headless (papermill)")
    nb = p["notebooks"].add_subparsers(dest="nb_command", parser_class=_Parser, metavar="run")
    nb_run = nb.add_parser("run", help="execute notebooks into OUT/<name>/; --html DIR makes a site of them")
    nb_run.add_argument("names", nargs="*", help="notebook names or prefixes (default: all)")
    nb_run.add_argument("--all", action="store_true", help="run every notebook (what no names means, said explicitly)")
    nb_run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="set a parameter of the notebook's parameters cell (values are read as JSON)",
    )
    nb_run.add_argument("--out", default="runs/notebooks", help="where executed notebooks go (default: runs/notebooks)")
    nb_run.add_argument("--smoke", action="store_true", help="use each notebook's small smoke parameters")
    nb_run.add_argument("--timeout", type=float, default=900, help="seconds a cell may run, > 0 (default: 900)")
    nb_run.add_argument(
        "--check-solutions",
        action="store_true",
        help="keep the learner's view and also judge every exercise's reference solution and typical wrong answers",
    )
    nb_run.add_argument(
        "--html",
        default=None,
        metavar="DIR",
        help="then write a static HTML site of the notebooks run: DIR/index.html and a page each",
    )

    p["results"] = sub.add_parser("results", help="show the stored results as a table")
    p["results"].add_argument("--store", default="runs", help="results folder (default: runs)")
    p["results"].add_argument(
        "--baseline", default=None, help="compare against this run id or name: deltas and ratios instead of the table"
    )
    p["results"].add_argument(
        "--columns",
        default=None,
        help="comma-separated metrics to show, e.g. accuracy,params,latency_ms (default: "
        "accuracy,params,size_bytes,latency_ms,throughput_ips,train_seconds)",
    )
    p["results"].add_argument(
        "--sort",
        default=None,
        help="a metric (accuracy, params...) or a column header to sort by; a leading - sorts descending",
    )
    p["results"].add_argument(
        "--format", default="table", choices=RESULT_FORMATS, help="output format (default: table)"
    )
    return parser, p


def _dispatch(args: argparse.Namespace, parsers: dict[str, argparse.ArgumentParser]) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "generate":
        return _generate(args)
    if args.command == "tour":
        from .course.tour import tour

        report = tour(out=args.out, dataset=args.dataset, epochs=args.epochs)
        print(f"The report: {report.resolve()}\n            {report.resolve().as_uri()}")
        return 0
    if args.command == "doctor":
        from .course.doctor import doctor, format_report

        checks = doctor()
        print(format_report(checks))
        return 0 if all(c.ok for c in checks) else 1
    if args.command == "datasets":
        return _datasets(args, parsers["datasets"])
    if args.command == "models":
        from .models import list_models

        print("\n".join(list_models()))
        return 0
    if args.command == "notebooks":
        if args.nb_command is None:
            parsers["notebooks"].print_help(sys.stderr)
            return 2
        if args.all and args.names:
            raise ValueError(f"--all runs every notebook: give it or the names ({' '.join(args.names)}), not both")
        if args.html is not None and (problem := writable_problem(args.html)):
            raise OSError(f"{problem} (--html): choose another folder")  # before the runs, not minutes after
        from .course.notebooks import run_notebooks

        executed = run_notebooks(
            args.names,
            dict(args.parameter),
            out=args.out,
            smoke=args.smoke,
            progress=True,
            timeout=args.timeout,
            check_solutions=args.check_solutions,
        )
        for path in executed:
            print(path)
        if args.html is not None:
            from .course.site import build_site

            index = build_site(executed, args.html).resolve()
            print(f"The site: {index}\n          {index.as_uri()}")
        return 0
    if args.command == "results":
        return _results(args)
    if args.command == "search":
        return _search(args, parsers["search"])
    if args.command in ("export", "serve", "load-test"):
        return _deploy(args)
    raise AssertionError(args.command)


# --- deploy ---------------------------------------------------------------------------------------


def _add_deploy_parsers(sub, p: dict[str, argparse.ArgumentParser]) -> None:
    p["export"] = sub.add_parser(
        "export", help="export a stored run as a bundle: model files, parity check, model card"
    )
    p["export"].add_argument("run_id", metavar="RUN_ID", help="a stored run's id (workbench results lists them)")
    p["export"].add_argument(
        "--format",
        dest="fmt",
        default=None,
        choices=("onnx", "torch-export", "both"),
        help="model.onnx, model.pt2 or both (default: both); a language model's bundle holds its weights instead",
    )
    p["export"].add_argument("--out", required=True, help="the bundle folder to write")
    p["export"].add_argument("--store", default="runs", help="results folder (default: runs)")
    p["export"].add_argument("--data-root", default="data", help="where datasets are cached (default: data)")
    p["export"].add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p["export"].add_argument("--threads", type=int, default=None, help="CPU threads for the checks and timings")
    p["export"].add_argument("--no-latency", action="store_true", help="skip the runtime comparison on the card")
    p["export"].add_argument("--no-check", action="store_true", help="write the bundle even where parity fails")
    p["export"].add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p["serve"] = sub.add_parser(
        "serve", help="serve a bundle over HTTP on 127.0.0.1 (POST /predict; a language model: POST /generate)"
    )
    p["serve"].add_argument("bundle", metavar="BUNDLE", help="a folder written by workbench export")
    p["serve"].add_argument("--port", type=int, default=8000, help="port, 0-65535; 0 takes a free one (default: 8000)")
    p["serve"].add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 listens on all "
        "interfaces, reachable from other machines, and needs a token)",
    )
    p["serve"].add_argument(
        "--format",
        dest="fmt",
        default="auto",
        choices=("auto", "onnx", "torch-export"),
        help="which file of the bundle to serve (default: auto, ONNX where there is one)",
    )
    p["serve"].add_argument("--threads", type=int, default=1, help="inference threads, >= 1 (default: 1)")
    p["serve"].add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="images: the largest batch one request may send (default: 256); a language model: the requests "
        "decoded together (default: 16)",
    )
    p["serve"].add_argument(
        "--token",
        default=None,
        help="require Authorization: Bearer TOKEN on every request (needed beyond loopback); better: set "
        "WORKBENCH_SERVE_TOKEN, which other users cannot read in the process list",
    )
    p["serve"].add_argument(
        "--rate-limit", type=float, default=None, help="requests a second per client address (default: no limit)"
    )
    lm = p["serve"].add_argument_group("language models")
    lm.add_argument(
        "--batching",
        default="continuous",
        choices=("continuous", "static", "off"),
        help="how requests share decode steps: continuous (join and leave between steps), static (a batch "
        "runs to its end), off (one at a time) (default: continuous)",
    )
    lm.add_argument("--max-new-tokens", type=int, default=256, help="the most tokens one request may ask for")
    lm.add_argument("--max-prompt-tokens", type=int, default=None, help="the longest prompt (default: the context)")
    lm.add_argument("--max-streams", type=int, default=64, help="requests in flight at once; more get a 429")
    p["load-test"] = sub.add_parser(
        "load-test", help="send concurrent requests to a served bundle; print latency percentiles"
    )
    p["load-test"].add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:8000")
    p["load-test"].add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[4],
        help="requests in flight at once, >= 1; never more than --requests; several levels run one after "
        "another (default: 4)",
    )
    p["load-test"].add_argument(
        "--requests", type=int, default=200, help="requests to send at most, >= 1 (default: 200)"
    )
    p["load-test"].add_argument(
        "--duration", type=float, default=30.0, help="seconds to run at most, warm-up included, > 0 (default: 30)"
    )
    p["load-test"].add_argument("--batch-size", type=int, default=1, help="images per request, >= 1 (default: 1)")
    p["load-test"].add_argument("--token", default=None, help="the server's token (default: $WORKBENCH_SERVE_TOKEN)")
    p["load-test"].add_argument(
        "--generate", action="store_true", help="a language-model server: stream POST /generate, time each token"
    )
    p["load-test"].add_argument("--max-new-tokens", type=int, default=32, help="with --generate (default: 32)")
    p["load-test"].add_argument(
        "--prompt", action="append", default=None, help="with --generate, repeatable (default: a few lines of Python)"
    )


def _env_token() -> str | None:
    from .deploy.access import TOKEN_ENV

    return os.environ.get(TOKEN_ENV) or None


def _deploy(args: argparse.Namespace) -> int:
    from . import deploy

    if args.command == "export":
        bundle = deploy.export(
            args.run_id,
            args.out,
            fmt=args.fmt,
            store=args.store,
            data_root=args.data_root,
            opset=args.opset,
            threads=args.threads,
            latency=not args.no_latency,
            check=not args.no_check,
            overwrite=args.force,
        )
        print(deploy.card_text(bundle))
    elif args.command == "serve":
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port must be 0-65535, 0 taking a free port (got {args.port})")
        for flag, value in (("--threads", args.threads), ("--max-batch", args.max_batch)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} must be >= 1 (got {value})")
        bundle = deploy.load_bundle(args.bundle)
        lm = {}
        if bundle.task == "lm":
            lm = {
                "batching": args.batching,
                "max_new_tokens": args.max_new_tokens,
                "max_prompt_tokens": args.max_prompt_tokens,
                "max_streams": args.max_streams,
            }
        deploy.serve(
            bundle,
            host=args.host,
            port=args.port,
            fmt=args.fmt,
            threads=args.threads,
            max_batch=args.max_batch,
            token=args.token,
            rate_limit=args.rate_limit,
            **lm,
        )
    else:
        for flag, value in (
            *(("--concurrency", c) for c in args.concurrency),
            ("--requests", args.requests),
            ("--batch-size", args.batch_size),
            ("--max-new-tokens", args.max_new_tokens),
        ):
            if value < 1:
                raise ConfigError(f"{flag} must be >= 1 (got {value})")
        if not 0 < args.duration < float("inf"):  # also refuses nan
            raise ConfigError(f"--duration must be a number of seconds > 0 (got {args.duration:g})")
        options = {"requests": args.requests, "duration_s": args.duration, "token": args.token or _env_token()}
        if args.generate:
            options.update(generate=True, max_new_tokens=args.max_new_tokens)
            if args.prompt:
                options["prompts"] = args.prompt
        else:
            options["batch_size"] = args.batch_size
        table = deploy.load_test_levels(args.url, args.concurrency, **options)
        if len(table) == 1:
            print("\n".join(f"{k:>26}  {v}" for k, v in table.iloc[0].items()))
        else:
            print(table.to_string(index=False))
    return 0


# --- search ---------------------------------------------------------------------------------------


def _add_search_parsers(sub, p: dict[str, argparse.ArgumentParser], with_run_flags: bool) -> None:
    p["search"] = sub.add_parser(
        "search", help="search architecture, training and compression for the best trade-offs (Optuna)"
    )
    verbs = p["search"].add_subparsers(dest="search_command", parser_class=_Parser, metavar="run|worker|show")
    start = verbs.add_parser(
        "run",
        help="start (or continue) a study: every trial is a `workbench run`",
        description="Search a space around a base config (the run flags describe it) and print "
        "the Pareto front. A study of the same name in the same storage continues.",
    )
    if with_run_flags:
        _add_config_flags(start)
    start.add_argument(
        "--space",
        default="default",
        help='default, a JSON file (at most 1 MiB) or inline JSON: {"train.lr": {"float": [0.01, 0.3], '
        '"log": true}, "compress.prune": {"choice": ["none", "prune_structured"]}, ...}',
    )
    start.add_argument(
        "--strategy",
        default="auto",
        help="random, greedy, tpe, nsga2 (or genetic); auto: tpe for one objective, nsga2 for several (default: auto)",
    )
    start.add_argument(
        "--objectives",
        default=None,
        help="comma-separated result metrics (default: the task's, accuracy,size_bytes,latency_ms for images and "
        "loss,size_bytes,decode_tps for a language model)",
    )
    start.add_argument(
        "--constraint",
        action="append",
        default=[],
        metavar="METRIC=BOUND",
        help="repeatable: size_bytes=40000 (at most), accuracy=0.9 (at least)",
    )
    start.add_argument("--trials", type=int, default=20, help="trials in the study, all workers together (default: 20)")
    start.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds for this process; 0 makes the study and runs no trial (default: none)",
    )
    start.add_argument(
        "--sampler-seed", type=int, default=0, help="the sampler's seed; --seed is the training's (default: 0)"
    )
    start.add_argument(
        "--no-prune", action="store_true", help="do not stop poor trials early (single accuracy objective)"
    )
    worker = verbs.add_parser(
        "worker",
        help="join a study from another process or machine and run its trials",
        description="Join a study made by `workbench search run` (its settings are in the "
        "study) and run trials until its budget is spent.",
    )
    worker.add_argument("--timeout", type=float, default=None, help="seconds > 0 for this worker (default: none)")
    show = verbs.add_parser("show", help="the Pareto front of a study as a table")
    show.add_argument("study_name", metavar="NAME", help="the study's name")
    show.add_argument("--all", action="store_true", help="every finished trial, not only the front")
    show.add_argument("--format", default="table", choices=RESULT_FORMATS, help="output format (default: table)")
    for verb in (start, worker, show):
        if verb is not show:
            verb.add_argument(
                "--study",
                dest="study_name",
                required=verb is worker,
                default=None,
                help="the study's name" + ("" if verb is worker else " (default: STRATEGY-DATASET-TIME)"),
            )
        verb.add_argument(
            "--storage",
            default=None,
            help="sqlite:///FILE, postgresql://USER@HOST/DB or journal:FILE (default: STORE/studies.db)",
        )
        verb.add_argument("--store", default="runs", help="results folder (default: runs)")
        verb.add_argument("--no-progress", action="store_true", help="no progress bar")


def _search(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import importlib

    s = importlib.import_module("workbench.search")  # the package: workbench.search is also the function
    if args.search_command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.search_command == "run":
        base = config_from_args(args)
        space = (
            s.default_space(task=base.task)
            if args.space == "default"
            else s.Space.from_dict(_json_file(args.space, "--space"))
        )
        bounds = [_bound(c) for c in args.constraint]
        twice = next((m for i, (m, _) in enumerate(bounds) if m in dict(bounds[:i])), None)
        if twice is not None:
            raise ConfigError(f"--constraint names {twice} twice: give each metric one bound")
        result = s.search(
            space,
            base=base,
            strategy=args.strategy,
            objectives=None
            if args.objectives is None
            else [m.strip() for m in args.objectives.split(",") if m.strip()],
            constraints=dict(bounds),
            n_trials=args.trials,
            timeout=args.timeout,
            storage=args.storage,
            study_name=args.study_name,
            seed=args.sampler_seed,
            prune=not args.no_prune,
            store=args.store,
            progress=not args.no_progress,
        )
    elif args.search_command == "worker":
        result = s.worker(
            args.study_name, args.storage, store=args.store, timeout=args.timeout, progress=not args.no_progress
        )
    else:
        result = s.show(args.study_name, args.storage, store=args.store)
    print(_search_table(result, every=getattr(args, "all", False), fmt=getattr(args, "format", "table")))
    return 0


def _search_table(result, every: bool, fmt: str) -> str:
    from .report import readable

    rows = result.trials if every else result.front
    study = result.study.study_name
    if not len(rows):
        return f"study {study}: no finished trial on the front yet ({result.note or 'nothing run'})"
    params = {c: c[len("param.") :] for c in rows.columns if c.startswith("param.")}
    table = readable(
        rows, metrics=result.settings.objectives, fields={"trial": "trial", "trial_state": "state", **params}
    )
    table = table.drop(columns=["run"])
    head = (
        f"study {study} ({result.settings.strategy}): {len(result.trials)} trials, {len(result.front)} on the front"
        f"{'; ' + result.note if result.note else ''}"
    )
    return _format_table(table, fmt) if fmt in ("csv", "json") else f"{head}\n{_format_table(table, fmt)}"


def _bound(text: str) -> tuple[str, float]:
    """``METRIC=NUMBER`` as (metric, bound): a metric a search can bound and a finite number, or one line."""
    import math

    from ._registry import unknown_name_error
    from .search.pareto import direction, objective_metrics

    metric, eq, bound = (part.strip() for part in text.partition("="))
    try:
        value = float(bound)
    except ValueError:
        eq = ""
    if not eq:
        raise ConfigError(f"--constraint {text}: write METRIC=NUMBER, e.g. size_bytes=40000")
    if not math.isfinite(value):  # nan compares false with everything: every trial would count as feasible
        raise ConfigError(f"--constraint {text}: the bound must be a finite number, e.g. size_bytes=40000")
    try:
        direction(metric)
    except ValueError:
        raise ConfigError(str(unknown_name_error("metric for --constraint", metric, objective_metrics()))) from None
    return metric, value


def _json_file(path: str | Path, flag: str, limit: int = 1 << 20) -> Any:
    """JSON from the file ``path``, or ``path`` itself when it starts with ``{`` (inline JSON). Only a regular
    file of at most ``limit`` bytes is read (a space is a few hundred): /dev/zero or a pipe is one line."""
    import stat

    text = str(path)
    # A space is an object; a list or text that names no file was meant as JSON too (and is refused as a space).
    inline = text.lstrip().startswith("{") or (text.lstrip()[:1] in ("[", '"') and not os.path.lexists(text))
    where = f"{flag} (inline JSON)" if inline else f"{flag} {text}"
    if inline:
        source: str | bytes = text
    else:
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError(f"{where} is not a regular file: give a JSON file, or inline JSON starting with {{")
            with open(path, "rb") as f:
                source = f.read(limit + 1)
        except OSError as e:
            raise ConfigError(f"{where}: cannot read it ({one_line(e)})") from None
    if len(source) > limit:
        raise ConfigError(
            f"{where} is over {limit / 2**20:g} MiB: a JSON {flag} is a few hundred bytes; give a smaller one"
        )
    try:
        return json.loads(source)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where} is not JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text: give a JSON file") from None
    except RecursionError:
        raise ConfigError(f"{where} nests too deeply to be a {flag}: give a flat JSON object") from None


# --- run ------------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.print_config:
        print(cfg.to_json(indent=1))
        return 0
    from .pipeline import preflight, run
    from .train import Placement, in_torchrun, torchrun_command

    placement = None
    if cfg.parallel.world_size > 1 and not in_torchrun():
        placement = Placement(
            nproc_per_node=cfg.parallel.nproc,
            nnodes=cfg.parallel.nnodes,
            node_rank=args.node_rank,
            rdzv_endpoint=args.rdzv_endpoint,
        )
    if args.print_launch:
        if placement is None:
            raise ConfigError("--print-launch prints a torchrun launch: give --nproc N (and --nnodes M) above 1")
        print(
            " ".join(
                torchrun_command(["-m", "workbench.distributed", *_run_flags(args.argv)], placement, python="python")
            )
        )
        return 0
    check = preflight(cfg, store=args.store)
    for note in check.notes if os.environ.get("RANK", "0") == "0" else ():  # one rank of a launch says it once
        print(f"workbench: note: {note}", file=sys.stderr)
    if check.problems:
        raise ConfigError(check.problems[0])
    result = run(
        cfg,
        store=args.store,
        progress=not args.no_progress and not args.json,
        reuse=not args.no_reuse,
        resume=not args.no_resume,
        placement=placement,
    )
    if result is None:  # a rank other than 0, or a machine other than node 0: rank 0 prints and stores the row
        return 0
    print(
        json.dumps({**result.to_dict(), "row": {k: v for k, v in result.row().items() if k != "created"}}, default=str)
        if args.json
        else result_text(result)
    )
    return 0 if result.status == "ok" else 1


def _generate(args: argparse.Namespace) -> int:
    from .pipeline import generate

    writing = generate(
        args.run_id,
        args.prompt,
        args.max_new_tokens,
        temperature=(0.0 if args.draft else 0.8) if args.temperature is None else args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        kv_cache=not args.no_kv_cache,
        store=args.store,
        draft=args.draft,
        lookahead=args.lookahead,
    )
    print(args.prompt, end="", flush=True)
    for piece in writing:
        print(piece, end="", flush=True)
    print()
    if writing.stats is not None:
        s = writing.stats
        print(
            f"workbench: note: the draft's proposals kept {s.acceptance:.0%} ({s.accepted}/{s.proposed}); "
            f"{s.tokens_per_target_pass:.2f} tokens per pass of the model",
            file=sys.stderr,
        )
    return 0


def _run_flags(argv: Sequence[str]) -> list[str]:
    """``workbench run``'s flags as a rank takes them: the launch-only ones left out (torchrun has them)."""
    out, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg in ("--node-rank", "--rdzv-endpoint"):
            skip = True
        elif arg != "--print-launch" and not arg.startswith(("--node-rank=", "--rdzv-endpoint=")):
            out.append(arg)
    return out


def result_text(result) -> str:
    """A run's result as a person reads it: what was run, accuracy and cost (before -> after where it
    was compressed), every measured latency with its spread, and where it was measured."""
    from .report import METRICS, format_number
    from .tasks import get_task

    m = result.metrics
    before = m.get("before_compression") or {}
    lines = [("run", f"{result.config.label()} ({result.run_id}), status {result.status}")]
    if result.config.compress:
        lines.append(("compression", " -> ".join(s.label() for s in result.config.compress)))
    task = get_task(result.config.task)
    headline = [k for k in task.compare_metrics if METRICS[k].source in ("evaluation", "model")]
    for key in headline:
        if m.get(key) is None:
            continue
        metric = METRICS[key]
        after = format_number(m[key] * metric.scale)
        if before.get(key):
            change = (
                f"{100 * (m[key] - before[key]):+.1f} points" if key == "accuracy" else f"{m[key] / before[key]:.2f}x"
            )
            after = f"{format_number(before[key] * metric.scale)} -> {after} ({change})"
        lines.append((metric.axis_label, after))
    lines.append(("weights stored as", m.get("weight_dtype", "?")))
    for r in result.benchmarks:
        where = f"{r.get('device', '?').split(':')[0]} {r.get('mode', 'eager')}, batch {r['batch_size']}"
        if r.get("kind") == "generation":
            cache = "KV cache" if r["kv_cache"] else "recomputing"
            lines.append(
                (
                    f"generation, {r.get('mode', 'eager')}, batch {r['batch_size']}, {cache}",
                    f"first token {format_number(r['ttft_ms'])} ms, then {format_number(r['decode_tps'])} tokens/s "
                    f"({r['prompt_tokens']}-token prompt, {r['new_tokens']} new)" + (" NOISY" if r["noisy"] else ""),
                )
            )
            continue
        if r.get("latency_ms") is None:
            lines.append((f"latency, {where}", f"not measured: {r.get('skipped', 'skipped')}"))
            continue
        spread = r.get("relative_spread")
        text = (
            f"{format_number(r['latency_ms'])} ms (spread {spread:.0%})"
            if spread is not None
            else f"{format_number(r['latency_ms'])} ms"
        )
        if r.get("noisy"):
            text += " NOISY: the machine was busy; rerun on a quiet machine"
        lines.append((f"latency, {where}", text))
    if m.get(task.throughput_metric):
        lines.append((METRICS[task.throughput_metric].axis_label, format_number(m[task.throughput_metric])))
    lines.append(
        (
            "measured on",
            f"{m.get('measure_device_name')}, {m.get('threads', '?')} thread(s), "
            f"load average {m.get('load_average') if m.get('load_average') is None else round(m['load_average'], 1)}",
        )
    )
    trained = f"{m.get('train_device')}, {format_number(m.get('train_seconds') or 0)} s"
    lines.append(("trained on", trained + (f" (reused run {result.reused_from})" if result.reused_from else "")))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    from ._plain import leaf_settings
    from .compress import step_types
    from .config import RunConfig, field_paths

    settings = leaf_settings(RunConfig)
    defaults = RunConfig().flat()
    for path in field_paths():
        if path in _SKIP:
            continue
        (hint, described), default = settings[path], defaults[path]
        text = described.help if described else path
        names = described.names() if described else []
        if names and not all(n in text for n in names):  # unless the help lists them already
            text += f"; one of: {', '.join(names)}"
        default_text = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
        if described and described.unit:
            default_text += f" {described.unit}"
        kw: dict[str, Any] = {
            "dest": path,
            "default": argparse.SUPPRESS,
            "help": f"{text} (default: {default_text})".replace("%", "%%"),
        }
        if hint is bool:
            parser.add_argument(_flag(path), action=argparse.BooleanOptionalAction, **kw)
        elif hint == bool | str:  # on, off or a named choice: --compile, --no-compile, --compile auto
            parser.add_argument(_flag(path), nargs="?", const=True, type=_on_or_name, metavar="auto", **kw)
            parser.add_argument(
                "--no-" + _flag(path)[2:],
                action="store_const",
                const=False,
                dest=path,
                default=argparse.SUPPRESS,
                help=argparse.SUPPRESS,
            )
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            parser.add_argument(_flag(path), type=_comma_list(item), metavar="A,B", **kw)
        else:
            options = [t for t in typing.get_args(hint) if t is not type(None)] or [hint]
            kind = options[0] if len(options) == 1 else _number_or_name
            parser.add_argument(_flag(path), type=kind, metavar=_metavar(kind), **kw)
    parser.add_argument(
        "--augment",
        help="shorthand for the data.augment fields: none, or e.g. flip,crop=4,cutout=8 "
        "(flip or flip=alternate, crop, translate, cutout, rotate, brightness, contrast; "
        "a name alone takes a typical value)",
    )
    parser.add_argument(
        "--compress",
        action="append",
        default=[],
        metavar="KIND[:k=v,...]",
        help="a compression step, repeatable, applied in order after training, e.g. --compress static_int8 or "
        "--compress prune_structured:amount=0.5 --compress finetune:epochs=5; or a measured recipe: "
        "--compress recommended[:amount=0.5] (Taylor pruning in 3 steps with fine-tuning, then 5 fine-tune "
        "epochs: within a point of accuracy on digits); kinds: " + ", ".join(step_types()),
    )
    parser.add_argument("--config", type=Path, help="start from a saved RunConfig JSON file; flags override it")
    parser.add_argument(
        "--preset",
        metavar="NAME",
        help="start from a named recipe, for the --device given; flags override it: speedrun (CIFAR-10 "
        "against the fastest public scripts; on a CPU add e.g. --width 0.25 --epochs 4)",
    )
    parser.add_argument(
        "--from",
        dest="from_run",
        metavar="RUN_ID",
        help="start from a stored run: its config, flags override it; its training is reused "
        "when the training flags are left alone (e.g. --from RUN_ID --compress static_int8)",
    )


def _flag(path: str) -> str:
    return "--" + _FLAG_NAMES.get(path, path.rsplit(".", 1)[-1]).replace("_", "-")


def _metavar(kind: Any) -> str:
    return {int: "N", float: "X", str: "TEXT"}.get(kind, "VALUE")


def _comma_list(item: type):
    def parse(text: str) -> tuple:
        return tuple(item(v) for v in text.split(",") if v)

    parse.__name__ = f"comma-separated {item.__name__}"  # argparse names the type in its message
    return parse


def _on_or_name(text: str) -> bool | str:
    return {"true": True, "on": True, "false": False, "off": False}.get(text.lower(), text)


def _number_or_name(text: str) -> int | str:
    return int(text) if text.isdigit() else text


_number_or_name.__name__ = "number or name"


def _augment(spec: str) -> dict[str, Any]:
    from ._plain import to_plain
    from ._registry import unknown_name_error
    from .compress import read_value
    from .data import AugmentConfig

    out = to_plain(AugmentConfig())
    if spec == "none":
        return out
    defaults = {
        "flip": True,
        "crop": 4,
        "translate": 2,
        "cutout": 8,
        "rotate": 10.0,
        "brightness": 0.2,
        "contrast": 0.2,
    }
    for item in filter(None, spec.split(",")):
        key, eq, raw = item.partition("=")
        if key not in defaults:
            raise unknown_name_error("augmentation", key, defaults)
        if key == "flip" and raw == "alternate":
            out[key] = raw
        else:
            out[key] = read_value(raw, type(defaults[key]), f"augment.{key}") if eq else defaults[key]
    return out


def config_from_args(args: argparse.Namespace):
    """The RunConfig the ``run`` flags describe (a stored run's or a file's, with the flags over it)."""
    from .compress import parse_steps
    from .config import RunConfig
    from .tasks import get_task

    if getattr(args, "from_run", None):
        from .report import ResultStore

        cfg = ResultStore(args.store).get(args.from_run).config.replace(name="")
    elif getattr(args, "config", None):
        cfg = _config_file(args.config)
    elif getattr(args, "preset", None):
        from .presets import preset

        cfg = preset(args.preset, device=vars(args).get("hardware.device", "auto"))
    elif getattr(args, "task", None) and get_task(args.task).starting_preset:
        from .presets import preset

        cfg = preset(get_task(args.task).starting_preset, device=vars(args).get("hardware.device", "auto"))
    else:
        cfg = RunConfig()
    changes = {k: v for k, v in vars(args).items() if "." in k or k in ("name", "task")}
    if getattr(args, "augment", None):
        changes.update({f"data.augment.{k}": v for k, v in _augment(args.augment).items()})
    if getattr(args, "compress", None):
        changes["compress"] = [step for spec in args.compress for step in parse_steps(spec)]
    return cfg.replace(**changes) if changes else cfg


def _config_file(path: Path):
    """The RunConfig saved in ``path`` (JSON), or one line saying what is wrong with the file."""
    from .config import RunConfig

    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config {path}: cannot read it ({one_line(e)})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"--config {path} is not a RunConfig JSON file ({e.msg} at line {e.lineno}): "
            "write one with `workbench run ... --print-config > FILE` or the panel's Save"
        ) from None
    try:
        return RunConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"--config {path}: {e}") from None


# --- datasets, results ------------------------------------------------------------------------------


def _datasets(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.ds_command is None:
        parser.print_help(sys.stderr)
        return 2
    from .data import TEXT_CORPORA, fetch_dataset, list_datasets

    if args.ds_command == "list":
        print("\n".join([*list_datasets(), *(f"{name} (text: --task lm)" for name in TEXT_CORPORA)]))
        return 0
    failed = 0
    for name in args.names:  # every name is tried, and each reported
        try:
            print(f"{name}: {fetch_dataset(name, root=args.root)}")
        except (ValueError, OSError) as e:
            print(f"{name}: failed: {str(e).splitlines()[0]}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _results(args: argparse.Namespace) -> int:

    from .report import METRICS, ResultStore, compare, readable
    from .report.comparison import task_metrics

    df = ResultStore(args.store).frame()
    if df.empty:
        print(f"no results yet in {args.store}")
        return 0
    if args.columns:
        metrics = [c.strip() for c in args.columns.split(",") if c.strip()]
    else:
        metrics = task_metrics(df)
    if args.baseline is not None:
        table = compare(df, baseline=args.baseline, metrics=[m for m in metrics if m in df] or None)
        table = table.reset_index()
    else:
        unknown = [m for m in metrics if m not in df]
        if unknown:
            known = dict.fromkeys([*task_metrics(df), *task_metrics(df, "compare")])
            raise ValueError(f"--columns: no column {', '.join(unknown)} in these results. Metrics: {', '.join(known)}")
        table = readable(df, metrics=metrics)
    if args.sort:
        key = args.sort.lstrip("-")
        label = METRICS[key].label if key in METRICS else key  # a metric's name or its column's header
        column = next((c for c in table.columns if c in (key, label) or c.startswith((key, label))), None)
        if column is None:
            raise ValueError(f"--sort {args.sort}: no such column. Columns: {', '.join(map(str, table.columns))}")
        table = table.sort_values(column, ascending=not args.sort.startswith("-"))
    print(_format_table(table, args.format))
    return 0


def _format_table(table, fmt: str) -> str:
    from .report import format_number

    if fmt == "csv":
        return table.to_csv(index=False).rstrip()
    if fmt == "json":
        return table.to_json(orient="records", indent=1)
    shown = table.astype(object).map(lambda v: format_number(v) if isinstance(v, float) else ("" if v is None else v))
    if fmt == "markdown":
        header = "| " + " | ".join(map(str, shown.columns)) + " |"
        rule = "|" + "|".join("---" for _ in shown.columns) + "|"
        rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
        return "\n".join([header, rule, *rows])
    return shown.to_string(index=False)  # every row and column: nothing elided with "..."


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings reach a command-line user as one line, without the source line Python would quote."""
    print(f"workbench: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
