"""The `fastgan` command.

    fastgan train                     a conditional GAN on the 8x8 digits (about four minutes on a CPU)
    fastgan train --data DIR ...      your images (optionally with a CSV of attributes)
    fastgan sample --ckpt RUN --cond 3 --n 16 --out threes.png
    fastgan bench                     a DCGAN training step: eager, torch.compile and fastgan side by side
    fastgan bench --host              host overhead per step (launches stubbed) and launches per step

Each subcommand is one module here whose `add_<name>` function registers its parser and
handler; COMMANDS lists them, so a new subcommand is one more module. The option types,
the usage error and the exit statuses they share are in arguments.py. Bad input gives a
one-line error on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from .arguments import EXIT_FAILED, EXIT_USAGE, Parser, UsageError
from .bench import add_bench
from .eval import add_eval
from .export import add_export
from .sample import add_sample
from .train import add_train

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_USAGE", "UsageError", "build_parser", "main"]

COMMANDS = [add_train, add_sample, add_eval, add_export, add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fastgan", description="Train GANs that generate for a user's condition, fast.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subparsers.required = True
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="fastgan: %(message)s", stream=sys.stderr)
    try:
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except UsageError as error:
        print(str(error).splitlines()[0], file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C before training started (training handles its own)
        print("fastgan: interrupted", file=sys.stderr)
        return 128 + 2
