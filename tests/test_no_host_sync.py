"""A Trainer step never waits for the device: no host sync anywhere in it.

A CUDA graph cannot capture a step that reads a device value on the host (.item(),
.tolist(), .cpu(), bool/int/float of a tensor), makes a data-dependent shape (nonzero,
masked_select, unique) or synchronizes; and even without graphs each such call stalls
the host until the GPU catches up. This is checked on a CPU by making those calls raise
for the duration of Trainer.train_step() (not the logging or checkpoint code around it),
on the reference backend and on the Triton kernels under the interpreter. Triton's
interpreter itself moves tensors to numpy to "launch" a kernel, which on a GPU is an
asynchronous launch, so the guard is lifted inside a kernel launch only.
"""

import contextlib

import pytest
import torch

import fastgan
from fastgan.data import ArrayData
from fastgan.models import DCGANDiscriminator, DCGANGenerator
from fastgan.train import Trainer


class HostSyncError(AssertionError):
    """A call that would make the host wait for the device, inside the step."""


def _tensor_args(*args, **kwargs):
    return any(isinstance(a, torch.Tensor) for a in list(args) + list(kwargs.values()))


# (owner, attribute, when it syncs: None = always, else a predicate on the call's arguments)
SYNCING_CALLS = [
    (torch.Tensor, "item", None),
    (torch.Tensor, "tolist", None),
    (torch.Tensor, "cpu", None),
    (torch.Tensor, "numpy", None),
    (torch.Tensor, "__array__", None),
    (torch.Tensor, "__bool__", None),
    (torch.Tensor, "__int__", None),
    (torch.Tensor, "__float__", None),
    (torch.Tensor, "__index__", None),
    (torch.Tensor, "__format__", None),
    (torch.Tensor, "nonzero", None),
    (torch.Tensor, "masked_select", None),
    (torch.Tensor, "unique", None),
    (torch.Tensor, "argwhere", None),
    (torch, "nonzero", None),
    (torch, "masked_select", None),
    (torch, "unique", None),
    (torch, "argwhere", None),
    (torch, "where", lambda *args, **kwargs: len(args) + len(kwargs) == 1),  # where(cond) is nonzero
    (torch, "repeat_interleave", lambda *args, **kwargs: "output_size" not in kwargs and _tensor_args(*args[1:2])),
    (torch.cuda, "synchronize", None),
    (torch.cuda.Stream, "synchronize", None),
    (torch.cuda.Event, "synchronize", None),
]


@contextlib.contextmanager
def forbid_host_sync():
    """Inside the block every call of SYNCING_CALLS raises HostSyncError, except while
    a Triton kernel is being launched (the interpreter's own host copies)."""
    from triton.runtime.jit import KernelInterface

    launching = [0]
    patched = []

    def guard(owner, name, syncs):
        original = owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)

        def checked(*args, **kwargs):
            if not launching[0] and (syncs is None or syncs(*args, **kwargs)):
                raise HostSyncError(f"{getattr(owner, '__name__', owner)}.{name} synchronizes with the device "
                                    f"inside the training step")
            return original(*args, **kwargs)

        patched.append((owner, name, original))
        setattr(owner, name, checked)

    original_getitem = KernelInterface.__getitem__

    def getitem(self, grid):
        launcher = original_getitem(self, grid)

        def launch(*args, **kwargs):
            launching[0] += 1
            try:
                return launcher(*args, **kwargs)
            finally:
                launching[0] -= 1

        return launch

    try:
        for owner, name, syncs in SYNCING_CALLS:
            guard(owner, name, syncs)
        KernelInterface.__getitem__ = getitem
        yield
    finally:
        KernelInterface.__getitem__ = original_getitem
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def test_the_guard_catches_each_kind_of_sync():
    t = torch.tensor([1.0, 0.0, 2.0])
    calls = [lambda: t[0].item(), lambda: t.tolist(), lambda: t.cpu(), lambda: bool(t[0]), lambda: float(t[0]),
             lambda: int(t[0]), lambda: t.nonzero(), lambda: torch.nonzero(t), lambda: t[t > 0.5] if t[0] else None,
             lambda: torch.where(t > 0), lambda: f"{t[0]:.3f}", lambda: torch.unique(t), lambda: list(range(t[0].long())),
             lambda: t.numpy(), lambda: torch.repeat_interleave(t, t.long())]
    with forbid_host_sync():
        for i, call in enumerate(calls):
            with pytest.raises(HostSyncError):
                call()
        torch.where(t > 0, t, -t)  # the three-argument form has a static shape: allowed
    assert t[0].item() == 1.0 and bool(t[0])  # restored afterwards


def small_trainer(**overrides):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=gen) * 2 - 1
    data = ArrayData(x, torch.arange(16) % 3, cond_kind="label", cond_size=3)
    torch.manual_seed(0)
    g = DCGANGenerator(8, 1, width=4, latent_dim=4, extra_layers=1, cond_kind="label", cond_size=3, cond_dim=4)
    d = DCGANDiscriminator(8, 1, width=4, extra_layers=1, cond_kind="label", cond_size=3)
    # Every feature of the step: n_critic, accumulation, lazy R1 (on the first D update
    # of step 1, none in step 2), conditions, EMA, batch norm.
    settings = dict(batch_size=4, n_critic=2, accumulate=2, r1=1.0, r1_interval=3, ema=0.9, loss="hinge",
                    progress=False, device="cpu")
    trainer = Trainer(g, d, data, **dict(settings, **overrides))
    # The optimizers the Trainer builds on CUDA: fused Adam. (On a CPU the Trainer keeps
    # torch's default single-tensor Adam, which reads its step count with .item(): a
    # CPU-only code path, never taken on the GPU.)
    for name, model, lr in (("g_opt", trainer.G, 2e-4), ("d_opt", trainer.D, 2e-4)):
        setattr(trainer, name, torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999), fused=True))
    return trainer


def check_steps_do_not_sync(trainer, steps):
    for _ in range(steps):
        with forbid_host_sync():
            losses = trainer.train_step()
        values = torch.stack(list(losses.values()))
        assert torch.isfinite(values).all(), values


@pytest.mark.parametrize("loss", ["hinge", "nonsaturating"])
def test_reference_step_has_no_host_sync(loss):
    with fastgan.use_backend("reference"):
        check_steps_do_not_sync(small_trainer(loss=loss), steps=2)


def test_triton_step_has_no_host_sync():
    # One step covers every path: D update 1 with R1, D update 2 without (interval 3).
    with fastgan.use_backend("triton"):
        check_steps_do_not_sync(small_trainer(), steps=1)


def test_a_syncing_step_is_caught():
    """The check has teeth: the same step with one host read added in the loss fails."""
    trainer = small_trainer()
    original = trainer.loss.generator

    def generator_loss_that_reads_back(logits):
        loss = original(logits)
        if loss > 1e9:  # bool(tensor): a host sync
            raise AssertionError("unreachable")
        return loss

    trainer.loss.generator = generator_loss_that_reads_back
    with fastgan.use_backend("reference"), pytest.raises(HostSyncError, match="__bool__"):
        check_steps_do_not_sync(trainer, steps=1)


def test_graph_mode_step_has_no_host_sync(monkeypatch):
    """Trainer(cuda_graph=True)'s own host path (copies into the static inputs, the
    graph call, the output clone), with the CUDA parts emulated (graph_emulation.py),
    through warm-up, capture and replays of both R1 patterns."""
    from graph_emulation import emulate_cuda_graphs
    from fastgan.train.trainer import GRAPH_WARMUP

    emulate_cuda_graphs(monkeypatch)
    trainer = small_trainer(cuda_graph=True, n_critic=1, r1_interval=2)
    with fastgan.use_backend("reference"):
        check_steps_do_not_sync(trainer, steps=2 * (GRAPH_WARMUP + 1))
    assert all(g.captured for g in trainer._graphs.values()) and len(trainer._graphs) == 2
