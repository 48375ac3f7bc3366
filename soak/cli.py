"""Command line: `soak once | run | check | rules | dashboard | compare | schema | mock`.

The only place that prints errors and picks exit codes: 0 pass, 1 SLO breach or run failure,
2 usage or config error. Library code raises `ConfigError` or returns data.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from soak import __version__

if TYPE_CHECKING:
    from soak.eventloop import LoopFactory

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that says one line and exits 2, as usage errors should."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"soak: error: {message} (see soak {self.prog.split()[-1]} --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="soak", description="Continuous soak tester for LLM gateways.")
    p.add_argument("--version", action="version", version=f"llm-soak {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    once = sub.add_parser("once", help="run the phases once (CI); exit 1 on an SLO breach")
    once.add_argument(
        "--config",
        type=Path,
        help="YAML config (default: the embedded default: "
        "mock providers + a managed LiteLLM proxy)",
    )
    once.add_argument(
        "--profile", choices=["quick", "full"], help="built-in profile to layer under"
    )
    once.add_argument(
        "--out", type=Path, help="report directory (default: the config's, soak-results)"
    )
    once.add_argument("--phases", help="comma-separated subset of phases to run, in config order")
    once.add_argument(
        "--baseline", type=Path, metavar="REPORT_JSON",
        help="a previous run's report.json: compare per-request overhead with it and fail on a"
        " regression beyond slo.regression",
    )  # fmt: skip
    once.add_argument(
        "--repeat", type=_repeat, metavar="N",
        help="run each phase slo.regression gates N times (default: slo.regression.runs); a"
        " comparison judges each side's least-disturbed run: use the same N for the baseline",
    )  # fmt: skip
    once.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )

    run = sub.add_parser("run", help="the daemon: phase plans on a schedule, /metrics, history")
    run.add_argument(
        "--config",
        type=Path,
        help="YAML config (default: the embedded default on a 2-minute schedule)",
    )
    run.add_argument("--profile", choices=["quick", "full"], help="built-in profile to layer under")
    run.add_argument("--listen", help="host:port of the HTTP server (default: server.listen)")
    run.add_argument("--data-dir", type=Path, help="run history dir (default: server.data_dir)")
    run.add_argument("--log-format", default="json", choices=["json", "text"])
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    check = sub.add_parser("check", help="validate a config file and exit (0 valid, 2 invalid)")
    check.add_argument("config", type=Path)
    check.add_argument("--profile", choices=["quick", "full"])
    check.add_argument(
        "--offline", "--no-secrets", action="store_true", dest="offline",
        help="validate everything but the presence of secrets (env vars, key files): for CI"
        " jobs without them",
    )  # fmt: skip

    _add_generate_parsers(sub)
    _add_ci_parsers(sub)
    sub.add_parser("mock", help="run the mock LLM provider", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; an unexpected failure is one line on stderr and exit 1, not a traceback."""
    try:
        return _main(argv)
    except Exception as exc:  # the last line of defence: nothing reaches the user as a traceback
        logging.getLogger("soak").debug("internal error", exc_info=True)
        print(
            f"soak: internal error: {type(exc).__name__}: {exc} (rerun with --log-level debug)",
            file=sys.stderr,
        )
        return EXIT_FAIL


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "mock":
        from soak.mock.cli import main as mock_main

        return mock_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help(sys.stderr)
        return EXIT_USAGE
    if args.command in ("rules", "dashboard"):
        return _generate(args)
    if args.command in ("compare", "schema"):
        return _compare(args) if args.command == "compare" else _schema(args)
    if args.command == "check":
        return _check(args)
    if args.command == "run":
        return _run(args)
    return _once(args)


def _check(args: argparse.Namespace) -> int:
    from soak.config import ConfigError
    from soak.config.offline import OfflineEnv
    from soak.phases import load_config

    try:
        env = OfflineEnv() if args.offline else os.environ
        load_config(args.config, profile=args.profile, env=env)
    except ConfigError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.config}: ok{' (secrets not checked: --offline)' if args.offline else ''}")
    return EXIT_OK


def _repeat(text: str) -> int:
    """`--repeat N`: 1 to the most `slo.regression.runs` allows."""
    from soak.config.regression import MAX_RUNS

    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_RUNS:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_RUNS}, got {text!r}"
        )
    return int(text)


def _loop_factory(choice: str) -> LoopFactory | None:
    """`engine.loop` as an `asyncio.Runner` loop factory; uvloop missing is a config error."""
    from soak.config import ConfigError
    from soak.eventloop import LoopUnavailable, loop_factory

    try:
        return loop_factory(choice)
    except LoopUnavailable as exc:
        raise ConfigError(f"engine.loop: {exc}") from None


def _once(args: argparse.Namespace) -> int:
    from soak.config import ConfigError
    from soak.once import OnceError, run_once
    from soak.phases import load_config
    from soak.reports import ReportWriteError

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, profile=args.profile)
        factory = _loop_factory(config.engine.loop)
    except ConfigError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return EXIT_USAGE
    phases = None if args.phases is None else [p.strip() for p in args.phases.split(",")]
    baseline = None
    if args.baseline is not None:
        try:
            baseline = (_read_report(args.baseline), str(args.baseline))
        except ValueError as exc:
            print(f"soak: --baseline: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        job = run_once(config, out_dir=args.out, only=phases, baseline=baseline,
                       repeat=args.repeat)  # fmt: skip
        with asyncio.Runner(loop_factory=factory) as runner:
            run, paths = runner.run(job)
    except OnceError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return exc.exit_code
    except ReportWriteError as exc:  # checked before the load; the disk can still fill up
        print(f"soak: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return EXIT_FAIL
    for kind, path in sorted(paths.items()):
        print(f"{kind}: {path}")
    if run.comparison is not None:
        from soak.reports.comparison_md import headline

        print(f"vs baseline {run.comparison.baseline_run_id}: {headline(run.comparison)}")
    print(f"verdict: {'PASS' if run.passed else 'FAIL'}")
    return EXIT_OK if run.passed else EXIT_FAIL


def _run(args: argparse.Namespace) -> int:
    from soak.config import ConfigError
    from soak.config.daemon import split_listen
    from soak.daemon import ConfigSource, Daemon, DaemonError
    from soak.history import HistoryError
    from soak.logjson import configure

    configure(args.log_format, args.log_level)
    source = ConfigSource(args.config, args.profile)
    try:
        config = source.load()
        factory = _loop_factory(config.engine.loop)  # read at start; a reload keeps the loop
        if args.listen is not None:
            split_listen(args.listen)
    except (ConfigError, ValueError) as exc:
        print(f"soak: {'--listen: ' if isinstance(exc, ValueError) else ''}{exc}", file=sys.stderr)
        return EXIT_USAGE

    def listening(host: str, port: int) -> None:
        print(f"listening on http://{host}:{port}", flush=True)

    try:
        daemon = Daemon(source, config, listen=args.listen, data_dir=args.data_dir)
    except HistoryError as exc:  # an unusable data dir is a config error: name the key
        key = "--data-dir" if args.data_dir is not None else "server.data_dir"
        print(f"soak: {key}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(daemon.run(on_listening=listening))
    except (DaemonError, HistoryError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_OK


def _add_generate_parsers(sub: argparse._SubParsersAction) -> None:
    """`soak rules` and `soak dashboard`: the artefacts of a config (soak.generate)."""
    rules = sub.add_parser(
        "rules", help="Prometheus alert and recording rules for a config's SLOs and schedule"
    )
    rules.add_argument("--config", type=Path, required=True, help="YAML config (as for soak run)")
    rules.add_argument("--out", type=Path, help="write to this file (default: stdout)")
    rules.add_argument(
        "--format", default="rules", choices=["rules", "prometheusrule"],
        help="a plain rules file (default) or a monitoring.coreos.com/v1 PrometheusRule",
    )  # fmt: skip
    rules.add_argument("--name", help="PrometheusRule name (default: llm-soak)")
    rules.add_argument("--namespace", help="PrometheusRule namespace (default: none)")
    rules.add_argument(
        "--label", action="append", metavar="KEY=VALUE",
        help="PrometheusRule label, repeatable; replaces the default "
        "release=kube-prometheus-stack (match your Prometheus' ruleSelector)",
    )  # fmt: skip
    rules.add_argument("--runbook-base", help="URL each alert's runbook_url anchors into")
    dashboard = sub.add_parser(
        "dashboard", help="the Grafana dashboard JSON with a config's SLO threshold lines"
    )
    dashboard.add_argument(
        "--config", type=Path, required=True, help="YAML config (as for soak run)"
    )
    dashboard.add_argument("--out", type=Path, help="write to this file (default: stdout)")


def _generate(args: argparse.Namespace) -> int:
    from soak import generate
    from soak.config import ConfigError

    try:
        config = generate.load(args.config)
        if args.command == "dashboard":
            text = generate.to_json(generate.dashboard(config))
        else:
            text = generate.rules_file(
                config, source=args.config, fmt=args.format, name=args.name,
                namespace=args.namespace, labels=args.label, runbook_base=args.runbook_base,
            )  # fmt: skip
    except (ConfigError, generate.GenerateError) as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    except OSError as exc:
        print(f"soak: --out: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {args.out}")
    return EXIT_OK


def _add_ci_parsers(sub: argparse._SubParsersAction) -> None:
    """`soak compare` (a run against a baseline) and `soak schema` (the config's JSON Schema)."""
    compare = sub.add_parser(
        "compare", help="compare two report.json files; exit 1 on a regression beyond the gate"
    )
    compare.add_argument("baseline", type=Path, help="the baseline run's report.json")
    compare.add_argument("current", type=Path, help="the run to judge: its report.json")
    compare.add_argument("--config", type=Path, help="YAML config whose slo.regression judges")
    compare.add_argument("--profile", choices=["quick", "full"])
    compare.add_argument("--format", default="markdown", choices=["markdown", "json"])
    schema = sub.add_parser("schema", help="print the JSON Schema of the config file")
    schema.add_argument("--out", type=Path, help="write to this file (default: stdout)")


def _read_report(path: Path):  # type: ignore[no-untyped-def]
    """A report.json as a RunReport; any problem is a ValueError of one line."""
    from soak.reports import parse_json

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        return parse_json(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _compare(args: argparse.Namespace) -> int:
    import json

    from soak.baseline import compare_runs
    from soak.config import ConfigError
    from soak.config.offline import OfflineEnv
    from soak.phases import load_config
    from soak.reports.comparison_md import comparison_section

    try:
        rules = load_config(args.config, profile=args.profile, env=OfflineEnv()).slo.regression
    except ConfigError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        baseline, current = _read_report(args.baseline), _read_report(args.current)
    except ValueError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return EXIT_USAGE
    result = compare_runs(baseline, current, rules, source=str(args.baseline))
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(comparison_section(result, heading="#")))
    return EXIT_FAIL if result.failed else EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    import json

    from soak.config.jsonschema import config_schema
    from soak.phases import registry

    text = json.dumps(config_schema(registry()), indent=2, ensure_ascii=False) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"soak: --out: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {args.out}")
    return EXIT_OK
