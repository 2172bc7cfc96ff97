"""``servekit`` command line: ``servekit serve module:Attr [...]``.

The ``serve`` flags are derived from the fields of :mod:`servekit.settings`: one flag per
setting, its help text giving the unit, the default and the environment variable. Flags not
given are left out, so the settings objects read ``SERVEKIT_*`` variables themselves.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import sys
import textwrap
import types
import typing
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from servekit import __version__
from servekit.settings import (
    EventSettings,
    QueueSettings,
    ServerSettings,
    event_overrides,
    flat_fields,
)

if TYPE_CHECKING:
    from servekit.server.app import App

#: ``servekit serve`` arguments for worker processes (``--workers N``): they parse them again.
SERVE_ARGS_ENV = "SERVEKIT_SERVE_ARGS"
_GROUPS = {
    ServerSettings: "server",
    QueueSettings: "queue (with --queue or --queue-url)",
    EventSettings: "events (one bus per process: engine events, request records, logs)",
}


class _Help(argparse.HelpFormatter):
    """Keeps URLs and names whole: no line break at a hyphen."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that suggests the closest flag for a misspelt one."""

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments:"):
            flags = _long_flags(self)
            for word in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1)
                if word.startswith("--") and close:
                    message = f"unknown option {word} (did you mean {close[0]}?)"
                    break
        super().error(message)


def _long_flags(parser: argparse.ArgumentParser) -> list[str]:
    flags = []
    for action in parser._actions:
        flags += [flag for flag in action.option_strings if flag.startswith("--")]
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags += _long_flags(sub)
    return flags


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="servekit", description="Serve Python models fast.", allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"servekit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = commands.add_parser(
        "serve",
        allow_abbrev=False,
        help="serve models over HTTP (Open Inference Protocol v2)",
        description="Serve one or more servekit.Model classes or instances. Every option"
        " falls back to its SERVEKIT_* environment variable, then to its default.",
        formatter_class=_Help,
    )
    serve.add_argument(
        "targets", nargs="+", metavar="MODULE:ATTR", help="e.g. app:MyModel or app.py:model"
    )
    groups: dict[type, argparse._ArgumentGroup] = {}
    for flat, (cls, field) in flat_fields().items():
        if cls not in groups:
            title = _GROUPS.get(cls, "batching (every model; beats a model's own settings)")
            groups[cls] = serve.add_argument_group(title)
        env = cls.env_name(field)
        _add_flag(groups[cls], flat, cls.model_fields[field], env)
    # servekit bench: the load tester (servekit.bench.command)
    from servekit.bench.command import DESCRIPTION, add_arguments

    bench = commands.add_parser(
        "bench", allow_abbrev=False, help="load-test a server", description=DESCRIPTION
    )
    add_arguments(bench)
    return parser


def _add_flag(group: argparse._ArgumentGroup, flat: str, info: FieldInfo, env: str) -> None:
    """One option for one settings field: type from the annotation, default in the help."""
    flag = "--" + flat.replace("_", "-")
    help_text = f"{info.description} (default: {_shown(info.default)}; env {env})"
    options: dict[str, Any] = {"dest": flat, "default": argparse.SUPPRESS}
    options["help"] = help_text.replace("%", "%%")
    kind = _scalar(info.annotation)
    if kind is bool:
        group.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
    elif typing.get_origin(kind) is Literal:
        group.add_argument(flag, choices=typing.get_args(kind), **options)
    else:
        convert = str if kind is SecretStr else kind
        metavar = {int: "N", float: "X"}.get(convert, "TEXT")
        group.add_argument(flag, type=convert, metavar=metavar, **options)


def _scalar(annotation: Any) -> Any:
    """``X`` for ``X | None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return kinds[0]
    return annotation


def _shown(default: Any) -> str:
    if default is None:
        return "none"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def parse_serve(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """The targets and the explicitly given settings of ``servekit serve`` arguments."""
    return _serve_args(_parser().parse_args(["serve", *argv]))


def _serve_args(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    given = {k: v for k, v in vars(args).items() if k not in ("command", "targets")}
    return list(args.targets), given


def worker_app() -> App:
    """uvicorn factory for ``--workers N``: each worker parses the parent's arguments again."""
    from servekit.server.runner import build_app

    targets, given = parse_serve(shlex.split(os.environ[SERVE_ARGS_ENV]))
    return build_app(targets, **given)


def _export_event_settings(given: dict[str, Any]) -> None:
    """``--events-*`` flags as ``SERVEKIT_EVENTS_*`` variables: the bus is one per process, made
    from the environment on first use, in this process and in every worker alike."""
    for field, value in event_overrides(given).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        os.environ[EventSettings.env_name(field)] = text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``servekit`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.command == "bench":
        from servekit.bench.command import main as bench_main

        return bench_main(args)
    if args.command == "serve":
        from servekit.server.loader import ModelCodeError
        from servekit.server.runner import serve

        targets, given = _serve_args(args)
        os.environ[SERVE_ARGS_ENV] = shlex.join(argv[argv.index("serve") + 1 :])
        _export_event_settings(given)
        try:
            if len(targets) == 1 and ":" not in targets[0]:  # app.py: @jobs.pipeline() classes
                from servekit.jobs.serve import serve_target

                return serve_target(targets[0], given)
            serve(targets, worker_factory="servekit.cli:worker_app", **given)
        except ModelCodeError as exc:  # raised in the user's code: show where
            print(f"servekit: error: {exc}:\n{exc.details}", end="", file=sys.stderr)
            return 2
        except (ValueError, TypeError, ImportError) as exc:  # a wrong target or setting
            print(f"servekit: error: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
