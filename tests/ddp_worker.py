"""Run by tests/test_distributed.py under torchrun: a few Trainer steps in each of the
processes; process 0 writes the checkpoint to the run directory given as argv[1]."""

import sys

import torch

torch.set_num_threads(1)

from test_distributed import DDP_SETTINGS, STEPS, data, models  # noqa: E402

from fastgan import Trainer  # noqa: E402

if __name__ == "__main__":
    trainer = Trainer(*models(), data(), run_dir=sys.argv[1], **DDP_SETTINGS, accumulate=int(sys.argv[2]))
    assert trainer.world.size == 2 and str(trainer.device) == "cpu" and trainer.local_batch == 4
    trainer.fit(STEPS)
    torch.distributed.destroy_process_group()
