"""Run by tests/test_sync_batch_norm.py under torchrun (2 processes, gloo): the fused,
SyncBatchNorm-converted model under DDP, each process on its rows of every global
batch; each writes what it saw to argv[1]/rank<r>.pt."""

import sys

import torch

torch.set_num_threads(1)

import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402
from test_sync_batch_norm import SPLIT, STEPS, batches, loss_of, penalty_of, plain_model  # noqa: E402

from fastgan.nn import SyncBatchNormAct, convert_sync_batchnorm, fuse  # noqa: E402

if __name__ == "__main__":
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = convert_sync_batchnorm(fuse(plain_model()))
    assert sum(isinstance(m, SyncBatchNormAct) for m in model.modules()) == 4
    ddp = DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    xs, targets, eval_x = batches()
    rows = slice(sum(SPLIT[:rank]), sum(SPLIT[: rank + 1]))
    record = {"out": [], "x_grad": [], "grads": []}
    for step in range(STEPS):
        x = xs[step][rows].clone().requires_grad_(True)
        out = ddp(x)
        loss_of(out, targets[step][rows], xs.shape[1], world).backward()
        record["out"].append(out.detach())
        record["x_grad"].append(x.grad)
        record["grads"].append([p.grad.clone() for p in model.parameters()])
        opt.step()
        opt.zero_grad()
    # Second order, outside DDP's hooks: each process differentiates its share; the sum
    # of the shares is the gradient of the whole batch's penalty.
    grads = torch.autograd.grad(penalty_of(model, xs[0][rows]), list(model.parameters()))
    for g in grads:
        dist.all_reduce(g)
    record["penalty_grads"] = list(grads)
    record["state"] = model.state_dict()
    model.eval()
    record["eval_out"] = model(eval_x).detach()
    torch.save(record, f"{sys.argv[1]}/rank{rank}.pt")
    dist.destroy_process_group()
