"""convert_sync_batchnorm: fastgan's batch norms keep their activation under DDP, and
two processes (gloo on the CPU, started by torchrun) compute what one process computes
on the whole batch: outputs, input and parameter gradients (first and second order),
running statistics and weights after a few SGD steps, eval outputs.

The single-process reference is the plain torch model (nn.BatchNorm + activation
modules), in float64 so that the comparison can be tight.
"""

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from fastgan.nn import BatchNormAct1d, BatchNormAct2d, SyncBatchNormAct, convert_sync_batchnorm, fuse

HERE = Path(__file__).resolve().parent
STEPS = 3
# An uneven split of the global batch of 8: the global count must come from every process.
SPLIT = (3, 5)


def plain_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.BatchNorm2d(2), nn.SiLU(),  # lone batch norm + act
        nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.LeakyReLU(0.2),
        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=None), nn.ReLU(),  # cumulative average
        nn.Flatten(),
        nn.Linear(64, 6), nn.BatchNorm1d(6), nn.Tanh(),
    ).double()


def batches():
    gen = torch.Generator().manual_seed(1)
    xs = torch.randn(STEPS, sum(SPLIT), 2, 4, 4, generator=gen, dtype=torch.float64) * 2 + 0.5
    targets = torch.randn(STEPS, sum(SPLIT), 6, generator=gen, dtype=torch.float64)
    eval_x = torch.randn(5, 2, 4, 4, generator=gen, dtype=torch.float64)
    return xs, targets, eval_x


def loss_of(out, target, global_batch, world_size):
    """Each process's share of the global mean loss, times world_size (DDP averages the
    gradients over processes, so the averaged gradient is that of the global mean)."""
    return ((out - target) ** 2).sum() / global_batch * world_size


def penalty_of(model, x):
    """R1-like: |d sum(out) / dx|^2 (a second-order gradient through the batch norms)."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    return (g * g).sum()


def test_conversion_keeps_activations_parameters_and_buffers():
    fused = fuse(plain_model())
    bns = [m for m in fused.modules() if isinstance(m, (BatchNormAct1d, BatchNormAct2d))]
    params, buffers = [m.weight for m in bns], [m.running_mean for m in bns]
    synced = convert_sync_batchnorm(fused)
    assert synced is fused  # changed in place, like torch's conversion
    converted = [m for m in synced.modules() if isinstance(m, SyncBatchNormAct)]
    assert [(m.act, m.alpha) for m in converted] == [(b.act, b.alpha) for b in bns]
    assert [m.act for m in converted] == ["silu", "lrelu", "relu", "tanh"]
    assert [m.momentum for m in converted] == [0.1, 0.1, None, 0.1]
    assert all(a is m.weight for a, m in zip(params, converted))
    assert all(a is m.running_mean for a, m in zip(buffers, converted))
    assert not any(isinstance(m, (BatchNormAct1d, BatchNormAct2d)) for m in synced.modules())
    assert list(synced.state_dict()) == list(plain_model().state_dict())


def test_plain_batch_norms_become_torch_sync_batch_norm():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, affine=False), nn.GELU())
    model[1].train(False)
    out = convert_sync_batchnorm(model)
    assert type(out[1]) is nn.SyncBatchNorm and out[1].weight is None and not out[1].training
    lone = BatchNormAct2d(3, act="sigmoid")
    converted = convert_sync_batchnorm(lone, process_group="group")
    assert type(converted) is SyncBatchNormAct and converted.act == "sigmoid" and converted.process_group == "group"


def test_torch_conversion_drops_the_activation():
    """Why fastgan's conversion exists (and the README says to use it): torch's makes a
    BatchNormAct2d a plain SyncBatchNorm, with no activation. If torch ever keeps it,
    this fails and the README's warning can go."""
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(BatchNormAct2d(3, act="relu")))
    assert type(converted[0]) is nn.SyncBatchNorm and not hasattr(converted[0], "act")


def test_outside_distributed_training_it_is_the_fused_batch_norm():
    """No process group (or eval): SyncBatchNormAct computes what BatchNormAct does."""
    plain = plain_model()
    synced = convert_sync_batchnorm(fuse(plain))
    x = batches()[0][0].requires_grad_(True)
    out_p, out_s = plain(x), synced(x)
    torch.testing.assert_close(out_s, out_p, rtol=1e-10, atol=1e-12)
    up = torch.randn_like(out_p)
    gp = torch.autograd.grad(out_p, [x, *plain.parameters()], up)
    gs = torch.autograd.grad(out_s, [x, *synced.parameters()], up)
    for a, b in zip(gs, gp):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    for a, b in zip(synced.buffers(), plain.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    plain.eval(), synced.eval()
    torch.testing.assert_close(synced(x), plain(x), rtol=1e-10, atol=1e-12)


def single_process_run():
    """What the DDP run must reproduce: the plain model, one process, the whole batch."""
    model = plain_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    xs, targets, eval_x = batches()
    record = {"out": [], "x_grad": [], "grads": []}
    for step in range(STEPS):
        x = xs[step].clone().requires_grad_(True)
        out = model(x)
        loss_of(out, targets[step], x.shape[0], 1).backward()
        record["out"].append(out.detach())
        record["x_grad"].append(x.grad)
        record["grads"].append([p.grad.clone() for p in model.parameters()])
        opt.step()
        opt.zero_grad()
    record["penalty_grads"] = torch.autograd.grad(penalty_of(model, xs[0]), list(model.parameters()))
    record["state"] = model.state_dict()
    model.eval()
    record["eval_out"] = model(eval_x).detach()
    return record


def test_two_processes_match_one_process_on_the_whole_batch(tmp_path):
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(HERE / "sync_batch_norm_worker.py"), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    one = single_process_run()
    close = dict(rtol=1e-9, atol=1e-11)
    for step in range(STEPS):
        torch.testing.assert_close(torch.cat([r["out"][step] for r in ranks]), one["out"][step], **close)
        # The input gradient of each process is its rows of the global loss's gradient,
        # times the world size (the loss_of scaling).
        x_grad = torch.cat([r["x_grad"][step] for r in ranks]) / 2
        torch.testing.assert_close(x_grad, one["x_grad"][step], **close)
        for rank in ranks:  # DDP's averaged gradients, the same on both processes
            for a, b in zip(rank["grads"][step], one["grads"][step]):
                torch.testing.assert_close(a, b, **close)
    for rank in ranks:
        for a, b in zip(rank["penalty_grads"], one["penalty_grads"]):
            torch.testing.assert_close(a, b, **close)
        assert list(rank["state"]) == list(one["state"])
        for name, value in one["state"].items():
            torch.testing.assert_close(rank["state"][name], value, **close, msg=name)
        torch.testing.assert_close(rank["eval_out"], one["eval_out"], **close)
    # Running statistics did move (and num_batches_tracked counted the training-mode
    # forwards: the steps and the penalty's).
    assert one["state"]["6.num_batches_tracked"] == STEPS + 1
    assert not torch.allclose(one["state"]["3.running_var"], torch.ones(4, dtype=torch.float64))


def test_per_process_statistics_would_differ():
    """The DDP comparison above can fail: batch norm over each process's rows alone
    (what an unconverted model computes under DDP) gives other outputs."""
    plain = plain_model()
    xs = batches()[0][0]
    whole = plain(xs)
    split = torch.cat([plain_model()(part) for part in xs.split(SPLIT)])
    assert not torch.allclose(whole, split, rtol=1e-3, atol=1e-4)
