"""The floating dtypes fastgan computes in and the dtype each accumulates in, and
whether Triton runs kernels through its CPU interpreter: one definition of each, read
by validation (fastgan._validate), the reference, the kernel launchers and the backend."""

from __future__ import annotations

import os

import torch

SUPPORTED = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
SUPPORTED_NAMES = "float16, bfloat16, float32 or float64"


def accumulator(dtype: torch.dtype) -> torch.dtype:
    """16- and 32-bit inputs are computed and accumulated in float32; float64 stays float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"
