"""The ``confdistill`` command: one sub-command per module in this package.

Each sub-command module defines ``add_parser(subparsers)`` which registers its parser and sets
``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
Modules here import only the standard library at top level; heavy imports (torch,
transformers, matplotlib) happen inside ``func`` so that ``confdistill --help`` and
``confdistill analyze`` start fast.

Errors: :class:`confdistill.errors.InputError` -> one line on stderr, exit 2; an operating-system
error (read-only file system, permission denied, no space left, a path that is a file — also when a
library wrapped it, as torch does on a full disk) -> one line naming the path and the cause, exit 2;
any other exception -> one line, exit 1; ``--debug`` shows the traceback. An empty path argument
('') is a usage error naming the flag, for every command (:data:`PATH_METAVARS`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from confdistill import __version__
from confdistill.errors import InputError, option_names

# Order is the order shown in --help.
SUBCOMMAND_MODULES = [
    "demo",
    "run",
    "analyze",
    "table",
    "finetune",
    "make_student",
    "general_distill",
    "distill",
    "predict",
    "export",
    "augment",
    "tune",
]


#: Metavars of the arguments that name a file or folder. An empty one ('') would become the
#: current folder (``Path("")`` is ``.``) or fail deep inside with an error naming no flag.
PATH_METAVARS = frozenset({"DIR", "FILE", "PATH", "RUN_JSON", "EXPERIMENT.toml"})


def _non_empty(convert: Any) -> Any:
    """``convert`` (an argparse type, None: the text) behind a check that the path is not empty."""
    def parse(text: str) -> Any:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"expected a path, got an empty string ({text!r})")
        return text if convert is None else convert(text)

    parse.__name__ = getattr(convert, "__name__", "path")  # argparse names the type in "invalid … value"
    return parse


def _refuse_empty_paths(parser: argparse.ArgumentParser) -> None:
    """Every path argument of every sub-command refuses '' as a usage error naming the flag (exit 2).

    Done here once, by metavar, rather than in each of the 38 ``add_argument`` calls; argparse has
    no public way to list a parser's arguments, hence ``_actions``.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _refuse_empty_paths(sub)
        elif action.metavar in PATH_METAVARS:
            action.type = _non_empty(action.type)


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error format (one line, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="confdistill",
        description="Distill a BERT-family classifier with TinyBERT and check that the student "
        "preserves the teacher's confidence (phi_cnf).",
    )
    parser.add_argument("-V", "--version", action="version", version=f"confdistill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors (accepted anywhere)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars or step logs, errors only (accepted anywhere)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(f"confdistill.cli.{name}")
        module.add_parser(subparsers)
    _refuse_empty_paths(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, before or after the sub-command.
    debug = "--debug" in argv or os.environ.get("CONFDISTILL_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    if "--quiet" in argv or "-q" in argv:
        # Progress bars (tqdm reads TQDM_DISABLE) and the runner's step log (CONFDISTILL_QUIET).
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["CONFDISTILL_QUIET"] = "1"
        argv = [a for a in argv if a not in ("--quiet", "-q")]
    # Nothing may download at run time (models are local directories), and the tokenizers' own
    # thread pool would fight torch for the cores: set once here for every sub-command.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        with option_names():  # settings named as options (--learning-rate), not fields
            code = args.func(args)
    except InputError as exc:
        if debug:
            raise
        print(f"confdistill {args.command}: error: {exc}", file=sys.stderr)
        return InputError.exit_code
    except KeyboardInterrupt:
        print(f"confdistill {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or an environment problem: still one line unless --debug
        if debug:
            raise
        from confdistill.errors import describe_os_error
        from confdistill.io import os_error_in

        os_error = os_error_in(exc)
        if os_error is not None:
            # The user's environment, not a bug: the path and the cause, exit 2.
            print(f"confdistill {args.command}: error: {describe_os_error(os_error)}", file=sys.stderr)
            return InputError.exit_code
        print(
            f"confdistill {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
