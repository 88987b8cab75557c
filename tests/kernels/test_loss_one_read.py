"""The fused loss reads the logits once: the forward launch computes the loss and its
gradient together, and the backward only scales the stored gradient by grad_output
(fastgan/ops/loss.py). And it is deterministic: the cross-program sum is a ticketed
sum in fixed order on kernels/_arrival.py's cached counter, never a float atomic."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import fastgan
from fastgan import functional as FG
from fastgan.kernels import _arrival
from fastgan.kernels import loss as KL
from fastgan.kernels._common import poison_outputs
from fastgan.reference.loss import KINDS
from utils import assert_close

# Tiles of 64 logits, at most 8 programs: the batches below take the ticketed path.
SMALL_TILES = dict(block=64, max_programs=8, reduce_block=4)


def _logits(seed, n_real=300, n_fake=200):
    gen = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n_real, generator=gen), 3 * torch.randn(n_fake, generator=gen)


def _d_loss_op(path):
    """discriminator loss (real, fake, kind, reduction) -> (real part, fake part) through
    the eager autograd Function (functional API) or the torch.library custom op."""
    if path == "function":
        def run(r, f, kind, reduction):
            out = FG.discriminator_loss(r, f, kind, reduction=reduction)
            return out if reduction == "none" else (out,)
        return run

    def run(r, f, kind, reduction):
        a, b, _, _ = torch.ops.fastgan.discriminator_loss(r, f, kind, 1.0, reduction)
        return a, b
    return run


def _backward(parts, weights):
    """Backpropagate sum(part * weight): a grad_output that is neither 1 nor uniform."""
    total = sum((p * w).sum() for p, w in zip(parts, weights))
    total.backward()


@pytest.mark.parametrize("backend", ["reference", "triton"])
@pytest.mark.parametrize("path", ["function", "custom_op"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("kind", KINDS)
def test_backward_never_reads_the_logits_again(backend, path, reduction, kind):
    """The logits are overwritten with NaN after the forward (through .data, so autograd's
    version check does not object): gradients must still be those of the original logits,
    scaled by grad_output. A backward that recomputed anything from the logits would
    return NaN."""
    real, fake = _logits(1)
    gen = torch.Generator().manual_seed(2)
    if reduction == "none":
        weights = (torch.rand(real.shape, generator=gen) + 0.5, torch.rand(fake.shape, generator=gen) + 0.5)
    else:
        weights = (torch.tensor(0.37), torch.tensor(0.37))  # the functional API returns one sum
    run = _d_loss_op(path)
    with fastgan.use_backend("reference"):  # the oracle: same op on untouched logits
        r_ref, f_ref = real.clone().requires_grad_(), fake.clone().requires_grad_()
        _backward(run(r_ref, f_ref, kind, reduction), weights)
    with fastgan.use_backend(backend), KL.configured(**SMALL_TILES), poison_outputs():
        r, f = real.clone().requires_grad_(), fake.clone().requires_grad_()
        parts = run(r, f, kind, reduction)
        g_loss = FG.generator_loss(f, kind, reduction="sum")
        r.data.fill_(float("nan"))
        f.data.fill_(float("nan"))
        _backward(parts, weights)
        got_d = (r.grad.clone(), f.grad.clone())
        r.grad = f.grad = None
        g_loss.backward(torch.tensor(-1.5))
    for got, want in zip(got_d, (r_ref.grad, f_ref.grad)):
        assert torch.isfinite(got).all()
        assert_close(got, want.double(), torch.float32, f"{backend} {kind} {reduction} gradient after poisoning")
    with fastgan.use_backend("reference"):
        f_ref = fake.clone().requires_grad_()
        FG.generator_loss(f_ref, kind, reduction="sum").backward(torch.tensor(-1.5))
    assert torch.isfinite(f.grad).all() and r.grad is None
    assert_close(f.grad, f_ref.grad.double(), torch.float32, f"{backend} {kind} generator gradient after poisoning")


def test_the_backward_launches_no_kernel():
    """One launch per loss, in the forward; the backward of a first-order gradient is the
    ATen scaling by grad_output only (a second launch would be a second read)."""
    from fastgan.bench.launches import recording_launches

    real, fake = _logits(3)
    with fastgan.use_backend("triton"), KL.configured(**SMALL_TILES):
        r, f = real.clone().requires_grad_(), fake.clone().requires_grad_()
        with recording_launches() as forward:
            loss = FG.discriminator_loss(r, f, "nonsaturating") + FG.generator_loss(f, "hinge")
        with recording_launches() as backward:
            loss.backward()
    assert [launch.name for launch in forward] == ["_adversarial_loss_kernel"] * 2
    assert backward == []


def test_losses_and_gradients_are_bitwise_repeatable_and_leave_the_counter_at_zero():
    """Ten runs of the discriminator and generator losses on the ticketed path: the same
    bits for the losses and the gradients each time. Every launch must also leave its
    cached ticket counter at 0 for the next one (otherwise no program of the next launch
    would draw the last ticket, and the poisoned loss would stay NaN)."""
    real, fake = _logits(4, n_real=1500, n_fake=777)
    results = []
    with fastgan.use_backend("triton"), KL.configured(**SMALL_TILES), poison_outputs():
        for _ in range(10):
            r, f = real.clone().requires_grad_(), fake.clone().requires_grad_()
            d = FG.discriminator_loss(r, f, "nonsaturating", real_label=0.9)
            g = FG.generator_loss(f, "minimax")
            (d + g).backward()
            results.append([d.detach(), g.detach(), r.grad, f.grad])
            assert int(_arrival.tile_counters(1, "cpu")[0]) == 0
    with fastgan.use_backend("reference"):
        r, f = real.clone().requires_grad_(), fake.clone().requires_grad_()
        want_d = FG.discriminator_loss(r, f, "nonsaturating", real_label=0.9)
    assert_close(results[0][0], want_d.double(), torch.float32, "ticketed loss")
    bits = [[t.reshape(-1).view(torch.int32) for t in run] for run in results]
    for other in bits[1:]:
        assert all(torch.equal(a, b) for a, b in zip(bits[0], other))


_FLOAT_ATOMICS_SCRIPT = textwrap.dedent("""
    import json, re, sys
    import torch, triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    sys.path.insert(0, sys.argv[1])
    from static_report import specialize
    import fastgan
    from fastgan import functional as FG
    from fastgan.bench.launches import recording_launches
    from fastgan.kernels._common import emulating

    backend = make_backend(GPUTarget("cuda", 90, 32))
    found = []
    with emulating("cuda_90", 132), fastgan.use_backend("triton"):
        # 10^6 logits a side: several hundred programs, the ticketed final sum.
        real, fake = torch.randn(10**6), torch.randn(10**6)
        with recording_launches(execute=False) as launches:
            FG.discriminator_loss(real, fake, "nonsaturating")
    for launch in launches:
        options, signature, constexprs, attrs = specialize(launch, backend)
        constants = {launch.kernel.params[p[0]].name: v for p, v in constexprs.items() if len(p) == 1}
        compiled = triton.compile(ASTSource(launch.kernel, signature, constexprs, attrs),
                                  target=GPUTarget("cuda", 90, 32), options=options.__dict__)
        ptx = compiled.asm["ptx"]
        found.append(dict(grid=str(launch.grid), one_program=bool(constants["ONE_PROGRAM"]),
                          atomics=re.findall(r"\\b(?:atom|red)\\.[\\w.]+", ptx)))
    print(json.dumps(found))
""")


def test_the_compiled_kernel_has_integer_atomics_only(tmp_path):
    """Compiled for sm_90 as a launch over 10^6 logits would be (several hundred
    programs): the PTX's atomics are the integer ticket and its reset, none on a float
    (a float atomic sum would make the loss depend on the programs' arrival order)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "FASTGAN_POISON_OUTPUTS")}
    env.update(TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path / "cache"))
    here = os.path.dirname(__file__)
    proc = subprocess.run([sys.executable, "-c", _FLOAT_ATOMICS_SCRIPT, here], capture_output=True, text=True,
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (launch,) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not launch["one_program"], launch
    atomics = launch["atomics"]
    assert atomics, "the ticketed sum should take an atomic ticket"
    floats = [a for a in atomics if any(t in a for t in (".f16", ".bf16", ".f32", ".f64"))]
    assert not floats, atomics
    assert all(any(t in a for t in (".u32", ".s32", ".b32")) for a in atomics), atomics
