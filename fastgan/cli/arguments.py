"""What every subcommand shares: the one-line usage error, exit statuses, the parser that
raises instead of printing usage, and the option types that reject bad values by name."""

from __future__ import annotations

import argparse
import math

EXIT_USAGE = 2
EXIT_FAILED = 1


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message; one line is enough
        raise UsageError(f"{self.prog}: error: {message}")



def int_at_least(low: int, expected: str):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1, "a positive integer")
nonneg_int = int_at_least(0, "an integer >= 0")


def nonneg_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def unit_float(text):
    value = nonneg_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def image_size(text):
    value = positive_int(text)
    if value not in (8, 16, 32, 64, 128, 256):
        raise argparse.ArgumentTypeError(f"must be a power of two from 8 to 256, got {text!r}")
    return value


def device_spec(text):
    import torch

    try:
        device = torch.device(text) if text != "auto" else None
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}") from None
    if device is not None and device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def set_threads(opts: dict) -> None:
    import torch

    threads = opts.get("threads")
    device = opts.get("device", "auto")
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if threads is None and on_cpu:
        # Measured on two shared cores: 25 ms/step with one thread, 250 ms with two
        # while another process kept one core busy (OpenMP threads wait for each other).
        threads = 1
    if threads is not None:
        torch.set_num_threads(threads)

