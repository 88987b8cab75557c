"""PyTorch's own OpInfo samples (torch.testing._internal.common_methods_invocations.op_db)
run through fastgan's functional ops on the reference and the triton backend: every
sample either gives torch's numbers (forward and the gradient of every differentiable
input, NaN where torch has NaN) or raises a ValueError / TypeError naming an argument.
Never a different number.

Each OpInfo op is mapped to fastgan's signature explicitly (see MAPPERS):
- conv2d / conv_transpose2d / linear: the op with act="linear"; torch's keyword
  arguments are passed through, so those fastgan has no form for (groups, dilation,
  string padding, unbatched input) must be refused by name.
- batch_norm: batch_norm_act(act="linear"), running statistics compared after the call.
- binary_cross_entropy_with_logits(x, target, reduction): fastgan's losses are BCE with
  constant targets, so each sample's logits and reduction run as
  generator_loss(x) == BCE(x, 1) and discriminator_loss(x, x, real_label=0.9) ==
  BCE(x, 0.9) + BCE(x, 0) (the pair of term tensors for reduction 'none'). The sample's
  random target is replaced by those constants; samples with weight or pos_weight have
  no fastgan form and are skipped with that reason.
- relu / leaky_relu / tanh / sigmoid / silu: batch_norm_act in eval mode on x viewed as
  [numel, 1], with running mean 0 and running variance 1 - eps, so that var + eps == 1
  and the normalisation is exactly the identity (z = x, NaN and inf included): the
  activation table (fastgan.reference.activations / kernels/activation.py, shared with
  the conv and linear epilogues) with an elementwise kernel the interpreter runs fast.
  (tests/test_activation_edges.py runs the kink and NaN cases through linear_bias_act.)

Samples run in float64 on the reference backend and in float32 on the triton backend
(Triton's interpreter has no bfloat16; float32 is the kernels' dtype there); on the
interpreter, samples with more than MAX_INTERPRETED_ELEMENTS elements are skipped for
time (the reference backend runs them all). Outcome counts per backend are printed
(pytest -s) and asserted: no mismatch, and a floor of matched samples per op, so the
test cannot pass by refusing or skipping everything.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Callable

import pytest
import torch
import torch.nn.functional as F

import fastgan
from fastgan import functional as FG

# Importing op_db takes a few seconds and needs torch's test-only dependency expecttest
# (in the project's test extras).
from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402

MAX_INTERPRETED_ELEMENTS = 20_000

# The argument names a refusal may start with: a clear error names what it refuses.
ARGUMENT_NAMES = (
    "x", "weight", "bias", "stride", "padding", "output_padding", "dilation", "groups", "running_mean",
    "running_var", "momentum", "eps", "training", "real_logits", "fake_logits", "alpha", "act",
)


@dataclasses.dataclass
class Case:
    """One sample as fastgan and torch calls on the same inputs. `ours` and `theirs`
    take the tensors of `inputs` (leaves made fresh for each side) and return one
    tensor; `state` are tensors both sides mutate (running statistics), compared after."""

    ours: Callable
    theirs: Callable
    inputs: list
    state: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Skip:
    reason: str


def _kwargs(sample, allowed):
    unknown = set(sample.kwargs) - set(allowed)
    # A keyword this test does not map would be silently dropped: fail instead, so a
    # newer torch's samples get an explicit mapping.
    assert not unknown, f"unmapped OpInfo keyword arguments {unknown}"
    return dict(sample.kwargs)


def _positional(sample, names):
    """Positional args after the input, by name (missing ones absent)."""
    return dict(zip(names, sample.args))


def map_conv2d(sample):
    kw = _kwargs(sample, ("stride", "padding", "dilation", "groups", "bias"))
    args = _positional(sample, ("weight", "bias", "stride", "padding", "dilation", "groups"))
    args.update(kw)
    weight, bias = args.pop("weight"), args.pop("bias", None)
    return Case(
        ours=lambda x, w, b: FG.conv2d_bias_act(x, w, b, **args),
        theirs=lambda x, w, b: F.conv2d(x, w, b, **args),
        inputs=[sample.input, weight, bias],
    )


def map_conv_transpose2d(sample):
    kw = _kwargs(sample, ("stride", "padding", "output_padding", "dilation", "groups", "bias"))
    args = _positional(sample, ("weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"))
    args.update(kw)
    weight, bias = args.pop("weight"), args.pop("bias", None)
    return Case(
        ours=lambda x, w, b: FG.conv_transpose2d_bias_act(x, w, b, **args),
        theirs=lambda x, w, b: F.conv_transpose2d(x, w, b, **args),
        inputs=[sample.input, weight, bias],
    )


def map_linear(sample):
    _kwargs(sample, ("bias",))
    args = _positional(sample, ("weight", "bias"))
    args.update(sample.kwargs)
    return Case(
        ours=lambda x, w, b: FG.linear_bias_act(x, w, b),
        theirs=lambda x, w, b: F.linear(x, w, b),
        inputs=[sample.input, args["weight"], args.get("bias")],
    )


def map_batch_norm(sample):
    kw = _kwargs(sample, ("weight", "bias", "training", "momentum", "eps"))
    args = _positional(sample, ("running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"))
    args.update(kw)
    training, momentum, eps = args.get("training", False), args.get("momentum", 0.1), args.get("eps", 1e-5)
    stats = [args.get("running_mean"), args.get("running_var")]
    return Case(
        ours=lambda x, w, b, rm, rv: FG.batch_norm_act(
            x, rm, rv, w, b, training=training, momentum=momentum, eps=eps
        ),
        theirs=lambda x, w, b, rm, rv: F.batch_norm(x, rm, rv, w, b, training, momentum, eps),
        inputs=[sample.input, args.get("weight"), args.get("bias")],
        state=stats,
    )


def map_bce_with_logits(sample):
    kw = _kwargs(sample, ("weight", "pos_weight", "reduction"))
    if kw.get("weight") is not None or kw.get("pos_weight") is not None:
        return Skip("BCE weight / pos_weight: fastgan's losses have no per-element weights")
    reduction = kw.get("reduction", "mean")
    bce = F.binary_cross_entropy_with_logits

    def ours_d(x):
        out = FG.discriminator_loss(x, x, real_label=0.9, reduction=reduction)
        return torch.stack(out) if reduction == "none" else out

    def theirs_d(x):
        real = bce(x, torch.full_like(x, 0.9), reduction=reduction)
        fake = bce(x, torch.zeros_like(x), reduction=reduction)
        return torch.stack([real, fake]) if reduction == "none" else real + fake

    return [
        Case(
            ours=lambda x: FG.generator_loss(x, reduction=reduction),
            theirs=lambda x: bce(x, torch.ones_like(x), reduction=reduction),
            inputs=[sample.input],
        ),
        Case(ours=ours_d, theirs=theirs_d, inputs=[sample.input]),
    ]


def _activation(act, torch_fn, alpha_of=None):
    def mapper(sample):
        kw = _kwargs(sample, ("negative_slope", "inplace"))
        alpha = alpha_of(sample) if alpha_of else None
        if kw.get("inplace"):
            return Skip("inplace=True: fastgan's ops return new tensors")

        def ours(x):
            eps = 2.0**-10  # 1 - eps and (1 - eps) + eps == 1 are exact in every float dtype
            mean, var = x.new_zeros(1).detach(), x.new_full((1,), 1 - eps).detach()
            z = FG.batch_norm_act(x.reshape(-1, 1), mean, var, training=False, eps=eps, act=act, alpha=alpha)
            return z.reshape(x.shape)

        return Case(ours=ours, theirs=lambda x: torch_fn(x, sample), inputs=[sample.input])

    return mapper


def _slope(sample):
    return sample.kwargs.get("negative_slope", sample.args[0] if sample.args else 0.01)


MAPPERS = {
    "nn.functional.conv2d": map_conv2d,
    "nn.functional.conv_transpose2d": map_conv_transpose2d,
    "nn.functional.linear": map_linear,
    "nn.functional.batch_norm": map_batch_norm,
    "nn.functional.binary_cross_entropy_with_logits": map_bce_with_logits,
    "nn.functional.relu": _activation("relu", lambda x, s: F.relu(x)),
    "nn.functional.leaky_relu": _activation("lrelu", lambda x, s: F.leaky_relu(x, _slope(s)), _slope),
    "tanh": _activation("tanh", lambda x, s: torch.tanh(x)),
    "sigmoid": _activation("sigmoid", lambda x, s: torch.sigmoid(x)),
    "nn.functional.silu": _activation("silu", lambda x, s: F.silu(x)),
}

# Fewest samples per op that must match torch on each backend: what the op's OpInfo
# samples hold in fastgan's supported subset (batched NCHW, no groups / dilation /
# string padding; BCE without weights), less the large ones on the interpreter. Seen
# at the time of writing: see the counts this test prints.
MIN_MATCHED = {
    "reference": {
        "nn.functional.conv2d": 3, "nn.functional.conv_transpose2d": 3, "nn.functional.linear": 18,
        "nn.functional.batch_norm": 10, "nn.functional.binary_cross_entropy_with_logits": 16,
        "nn.functional.relu": 35, "nn.functional.leaky_relu": 9, "tanh": 30, "sigmoid": 30,
        "nn.functional.silu": 30,
    },
    "triton": {
        "nn.functional.conv2d": 3, "nn.functional.conv_transpose2d": 3, "nn.functional.linear": 18,
        "nn.functional.batch_norm": 10, "nn.functional.binary_cross_entropy_with_logits": 16,
        "nn.functional.relu": 30, "nn.functional.leaky_relu": 9, "tanh": 25, "sigmoid": 25,
        "nn.functional.silu": 25,
    },
}


def _op(name):
    (op,) = [o for o in op_db if o.name == name and o.variant_test_name == ""]
    return op


def _leaves(tensors):
    out = []
    for t in tensors:
        if t is None:
            out.append(None)
        else:
            leaf = t.detach().clone()
            out.append(leaf.requires_grad_() if t.requires_grad and leaf.is_floating_point() else leaf)
    return out


def _assert_close(ours, theirs, dtype, what):
    if dtype == torch.float64:
        tol = dict(rtol=1e-7, atol=1e-7)
    else:
        finite = theirs.detach()[torch.isfinite(theirs.detach())]
        scale = max(1.0, finite.abs().max().item()) if finite.numel() else 1.0
        tol = dict(rtol=1e-4, atol=1e-5 * scale)
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} != torch's {tuple(theirs.shape)}"
    torch.testing.assert_close(ours.detach(), theirs.detach(), equal_nan=True, msg=lambda m: f"{what}: {m}", **tol)


def run_case(case: Case, backend: str, dtype, seed: int) -> str | None:
    """None if fastgan matches torch; the refusal message if fastgan refused the call.
    Raises AssertionError for a different number, and lets any other error through."""
    ours_in, theirs_in = _leaves(case.inputs), _leaves(case.inputs)
    ours_state, theirs_state = _leaves(case.state), _leaves(case.state)
    try:
        with fastgan.use_backend(backend):
            y = case.ours(*ours_in, *ours_state)
    except (ValueError, TypeError) as e:
        return str(e)
    ref = case.theirs(*theirs_in, *theirs_state)
    _assert_close(y, ref, dtype, "forward")
    for i, (a, b) in enumerate(zip(ours_state, theirs_state)):
        if b is not None:
            _assert_close(a, b, dtype, f"state {i} (running statistics)")
    wrt = [i for i, t in enumerate(theirs_in) if t is not None and t.requires_grad]
    if not wrt or not ref.requires_grad:
        return None
    up = torch.randn(ref.shape, dtype=ref.dtype, generator=torch.Generator().manual_seed(seed))
    with fastgan.use_backend(backend):
        got = torch.autograd.grad(y, [ours_in[i] for i in wrt], up, allow_unused=True)
    want = torch.autograd.grad(ref, [theirs_in[i] for i in wrt], up, allow_unused=True)
    for i, g, w in zip(wrt, got, want):
        zeros = torch.zeros_like(theirs_in[i])
        _assert_close(zeros if g is None else g, zeros if w is None else w, dtype, f"gradient of input {i}")
    return None


def _too_big_to_interpret(sample) -> bool:
    tensors = [sample.input, *sample.args, *sample.kwargs.values()]
    return any(isinstance(t, torch.Tensor) and t.numel() > MAX_INTERPRETED_ELEMENTS for t in tensors)


@pytest.mark.parametrize("backend", ["reference", "triton"])
@pytest.mark.parametrize("op_name", list(MAPPERS))
def test_opinfo_samples_match_torch_or_are_refused(backend, op_name):
    dtype = torch.float64 if backend == "reference" else torch.float32
    counts = collections.Counter()
    refusals, skips, mismatches = collections.Counter(), collections.Counter(), []
    samples = _op(op_name).reference_inputs("cpu", dtype, requires_grad=True)
    for index, sample in enumerate(samples):
        if backend == "triton" and _too_big_to_interpret(sample):
            skips[f"more than {MAX_INTERPRETED_ELEMENTS} elements: interpreter time"] += 1
            continue
        mapped = MAPPERS[op_name](sample)
        if isinstance(mapped, Skip):
            skips[mapped.reason] += 1
            continue
        for case in mapped if isinstance(mapped, list) else [mapped]:
            try:
                refused = run_case(case, backend, dtype, seed=index)
            except Exception as e:  # noqa: BLE001  (a wrong number or an unclear error: both fail)
                mismatches.append(f"sample {index} {tuple(sample.input.shape)} {sample.kwargs}: {type(e).__name__}: {e}")
                continue
            if refused is None:
                counts["matched"] += 1
            elif re.match(rf"({'|'.join(ARGUMENT_NAMES)})\b", refused):
                counts["refused"] += 1
                refusals[re.sub(r"\(shape .*?\)|got .*", "...", refused)[:90]] += 1
            else:
                mismatches.append(f"sample {index}: refused without naming an argument: {refused}")
    print(f"\n[{backend}] {op_name}: matched {counts['matched']}, refused {counts['refused']}, "
          f"skipped {sum(skips.values())}, mismatched {len(mismatches)}")
    for why, n in {**refusals, **skips}.items():
        print(f"    {n:3d} x {why}")
    assert not mismatches, "\n".join(mismatches[:20])
    assert counts["matched"] >= MIN_MATCHED[backend][op_name], f"only {counts['matched']} samples matched"
