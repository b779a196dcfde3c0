"""The `keras-cnn-ext` command line: a thin shell over the package's Python API.

Each command lives in a module of its own in this package and exposes
`add_parser(subparsers)`, which adds its `argparse` sub-parser and sets `func` (a callable
taking the parsed namespace and returning an exit code). Adding a command is one module and
one entry in `COMMANDS`.

Conventions (the way timm's `train.py` and the Keras callbacks read):

* a bad name or flag value exits with code 2 and a message listing the valid choices
  (`UsageError`, or argparse's own checks);
* no traceback unless `--debug` is given;
* a command prints its own output only: TensorFlow's C++/absl and Python log lines are hidden
  unless `--debug` or `-v` / `--show-logs` is given (`keras_cnn_ext._logs`);
* the same flag for the same thing everywhere (`_args.add_output`, `add_dataset`, ...);
* a TensorFlow-only feature (export, --strategy, a distributed search) under another Keras
  backend is a usage error too: exit code 2, naming the backend (`TensorFlowOnlyError`);
* a command that writes a folder holds its lock while it runs (`keras_cnn_ext.training.lock`):
  a second process on the same folder exits with code 2, naming the holder's pid and host;
* a command that writes files writes them into one output folder and says where.
"""

import argparse
import contextlib
import importlib
import sys

# (command, module under keras_cnn_ext.cli); the order is the order of `--help`
COMMANDS = (
    ("train", "train"),
    ("evaluate", "evaluate"),
    ("tune", "tune"),
    ("export", "export"),
    ("convert", "convert"),
    ("summary", "summary"),
    ("explain", "explain"),
    ("info", "info"),
)


class UsageError(ValueError):
    """A bad argument value on the command line: reported without a traceback, exit code 2."""


def choice_error(flag, value, choices):
    """A `UsageError` naming the flag, the value received and the valid choices.

    >>> print(choice_error("--model", "resnet19", ("resnet18", "resnet34")))
    invalid value for --model: 'resnet19' (choose from resnet18, resnet34)
    """
    return UsageError(f"invalid value for {flag}: {value!r} (choose from {', '.join(choices)})")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-cnn-ext",
        description="Textbook-exact convolutional networks for Keras 3 / TensorFlow.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from keras_cnn_ext.cli import _args

    _args.add_log_flags(parser, top_level=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for _, module in COMMANDS:
        importlib.import_module(f"keras_cnn_ext.cli.{module}").add_parser(subparsers)
    for sub in subparsers.choices.values():
        _args.add_log_flags(sub)
    return parser


def main(argv=None):
    """Runs the command line; returns the exit code (0 success, 1 failure, 2 usage error)."""
    from keras_cnn_ext import _logs
    from keras_cnn_ext._backend import TensorFlowOnlyError
    from keras_cnn_ext.training.lock import FolderLockedError

    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = _logs.quiet_python_logs() if not (args.debug or args.show_logs) else \
        contextlib.nullcontext()
    try:
        with quiet:
            return int(args.func(args) or 0)
    except (UsageError, FolderLockedError, TensorFlowOnlyError) as exc:
        if args.debug:
            raise
        parser.exit(2, f"keras-cnn-ext {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the command line reports, --debug re-raises
        if args.debug:
            raise
        print(f"keras-cnn-ext {args.command}: error: {type(exc).__name__}: {exc}\n"
              "(run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
