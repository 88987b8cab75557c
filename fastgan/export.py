"""Export a trained generator for serving without Python: torch.export, then an
AOTInductor package (.pt2) that `fastgan-sample` (native/, C++) or
torch._inductor.aoti_load_package runs.

The fused modules call fastgan's torch.library custom ops, whose implementations are
Python (the Triton launchers or the PyTorch reference). A package that still called
them could not run in a C++ process without Python. So the exported graph is
decomposed: each fastgan op is replaced by its plain aten composition (conv /
conv_transpose / linear / batch_norm followed by the activation epilogue, the same
formulas as fastgan.reference), and Inductor generates the fused code itself. This
works on the graph, not on module types, so it covers every model that calls the
ops, including a user's model rewritten by fastgan.nn.fuse. Any fastgan op without a
decomposition stops the export (never a package that fails at load time), and the
finished package is run against the original (fused) generator before it is kept.

Package layout (inputs, outputs, metadata; read by native/fastgan_sample.cpp):
    inputs   z [N, latent_dim] float32, then the condition when the model has one:
             label / user: int64 [N]; attributes: float32 [N, cond_size]. N is dynamic.
    output   images [N, C, H, W] in [-1, 1], or vectors [N, F]
    metadata fastgan.* keys below (strings), plus AOTInductor's own (AOTI_DEVICE_KEY).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .reference.activations import bias_act
from .reference.batch_norm import batch_stats

PACKAGE_FORMAT = "fastgan-generator"
PACKAGE_VERSION = 1
# Example batch for tracing: 2, not 1, so that the batch dimension is not specialised
# to the constant 1 (torch.export treats sizes 0 and 1 as static).
EXAMPLE_BATCH = 2
# Batch of the check after packaging: differs from the example batch, so the check also
# proves the package takes other batch sizes.
CHECK_BATCH = 3
# Max |package - generator| accepted by the check. CPU: both sides are float32 ieee; on
# CUDA the fused Triton kernels (and Inductor's GEMMs) may use tf32.
TOLERANCE = {"cpu": 1e-4, "cuda": 1e-2}


class ExportError(Exception):
    """The generator cannot be exported (unsupported op, package disagrees with it)."""


# ---------------------------------------------------------------------- decompositions
# Inference forms of the forward custom ops. Each returns what the op returns; the
# extra outputs (saved pre-activation, batch statistics) are only read by the backward,
# which an inference graph never runs, so they are empty unless the op's contract
# needs them in the forward.
def _conv_bias_act(x, weight, bias, stride, padding, output_padding, transposed, act, alpha, gain, clamp):
    if transposed:
        z = F.conv_transpose2d(x, weight, bias, stride, padding, output_padding)
    else:
        z = F.conv2d(x, weight, bias, stride, padding)
    return bias_act(z, act, alpha, gain, clamp), x.new_empty(0)


def _linear_bias_act(x, weight, bias, act, alpha, gain, clamp):
    return bias_act(F.linear(x, weight, bias), act, alpha, gain, clamp), x.new_empty(0)


def _batch_norm_act(x, weight, bias, running_mean, running_var, training, eps, act, alpha):
    if training:  # a norm without running statistics normalises with the batch's own
        mean, var = batch_stats(x)
        z = F.batch_norm(x, None, None, weight, bias, True, 0.0, eps)
    else:
        mean = var = x.new_empty(0)
        z = F.batch_norm(x, running_mean, running_var, weight, bias, False, 0.0, eps)
    return bias_act(z, act, alpha, 1.0, None), x.new_empty(0), mean, var


def decompositions() -> dict:
    """fastgan op -> plain aten composition, for ExportedProgram.run_decompositions."""
    from . import ops  # noqa: F401  (registers the ops)

    return {
        torch.ops.fastgan.conv_bias_act.default: _conv_bias_act,
        torch.ops.fastgan.linear_bias_act.default: _linear_bias_act,
        torch.ops.fastgan.batch_norm_act.default: _batch_norm_act,
    }


# ---------------------------------------------------------------------- export
@contextlib.contextmanager
def _quiet_torch():
    """Hide a warning torch 2.13 raises about its own deprecated pytree class while it
    exports (noise to a user: nothing here uses LeafSpec)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        yield


def example_inputs(generator: nn.Module, batch: int, device, seed: int = 0) -> tuple:
    """(z,) or (z, c): inputs of the generator's forward, as the package takes them."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, generator.latent_dim, generator=gen)
    kind, size = generator.cond_kind, generator.cond_size
    if kind == "none":
        return (z.to(device),)
    if kind == "attributes":
        c = (torch.rand(batch, size, generator=gen) > 0.5).float()
    else:
        c = torch.randint(size, (batch,), generator=gen)
    return z.to(device), c.to(device)


def export_program(generator: nn.Module, device) -> torch.export.ExportedProgram:
    """The generator (in eval mode, on `device`) as an ExportedProgram of plain aten ops
    with a dynamic batch dimension."""
    generator = generator.to(device).eval()
    inputs = example_inputs(generator, EXAMPLE_BATCH, device)
    batch = torch.export.Dim("batch", min=1)
    dynamic_shapes = tuple({0: batch} for _ in inputs)
    with torch.no_grad(), _quiet_torch():
        program = torch.export.export(generator, inputs, dynamic_shapes=dynamic_shapes)
        program = program.run_decompositions(decompositions())
    left = sorted({str(n.target) for n in program.graph.nodes
                   if n.op == "call_function" and str(n.target).startswith("fastgan.")})
    if left:
        raise ExportError(f"the generator calls fastgan op(s) with no export decomposition: {', '.join(left)}")
    return program


def metadata(generator: nn.Module, cond_names: list[str] | None) -> dict[str, str]:
    """What a package's user needs to build its inputs (all values are strings)."""
    probe = example_inputs(generator, 1, next(generator.parameters()).device)
    with torch.no_grad():
        shape = tuple(generator(*probe).shape[1:])
    return {
        "fastgan.format": PACKAGE_FORMAT,
        "fastgan.version": str(PACKAGE_VERSION),
        "fastgan.latent_dim": str(generator.latent_dim),
        "fastgan.cond_kind": generator.cond_kind,
        "fastgan.cond_size": str(generator.cond_size),
        # One name a line (names come from folder names and CSV headers: no newlines).
        "fastgan.cond_names": "\n".join(cond_names or []),
        "fastgan.sample_shape": ",".join(str(s) for s in shape),
    }


def export_generator(generator: nn.Module, path, *, device="cpu", cond_names: list[str] | None = None) -> float:
    """Write `generator` as an AOTInductor package for `device` to `path` (.pt2), then
    load it and check it against the generator on a fresh batch; returns the max
    absolute difference. The file appears only once the check has passed."""
    device = torch.device(device)
    generator = generator.to(device).eval()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.pt2")
    try:
        program = export_program(generator, device)
        with _quiet_torch():
            torch._inductor.aoti_compile_and_package(
                program, package_path=str(tmp),
                inductor_configs={"aot_inductor.metadata": metadata(generator, cond_names)},
            )
        difference = check_package(tmp, generator, device)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return difference


def check_package(path, generator: nn.Module, device) -> float:
    """Max |package(z, c) - generator(z, c)| on a batch of CHECK_BATCH; ExportError if
    beyond TOLERANCE."""
    package = torch._inductor.aoti_load_package(str(path))
    inputs = example_inputs(generator, CHECK_BATCH, device, seed=1)
    with torch.no_grad():
        expected = generator(*inputs).float()
        got = package(*inputs).float()
    if got.shape != expected.shape:
        raise ExportError(f"the package returned shape {tuple(got.shape)}, the generator {tuple(expected.shape)}")
    difference = (got - expected).abs().max().item()
    tolerance = TOLERANCE[torch.device(device).type]
    if not difference <= tolerance:  # NaN fails too
        raise ExportError(f"the package differs from the generator by {difference:.3g} (tolerance {tolerance:g})")
    return difference
