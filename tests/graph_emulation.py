"""Trainer(cuda_graph=True) on a CPU: the CUDA parts replaced, the rest as on a GPU
(tests/test_cuda_graph.py, tests/test_no_host_sync.py)."""

import torch

from fastgan.train import cuda_graph


class EmulatedGraph:
    """Stands in for a torch.cuda.CUDAGraph: replay() runs the step again on the static
    inputs and writes its results into the static outputs of the first replay, as a
    graph writes into the buffers it recorded. What is not emulated: the recording
    itself (kernels, addresses, memory pool), which needs a GPU (the gpu tests)."""

    def __init__(self, captured):
        self.captured = captured

    def replay(self):
        out = self.captured.step(**self.captured.inputs)
        if self.captured.outputs is None:
            self.captured.outputs = out
        else:
            for static, new in zip(cuda_graph._tensors(self.captured.outputs), cuda_graph._tensors(out)):
                static.copy_(new)


def emulate_cuda_graphs(monkeypatch):
    """Trainer(cuda_graph=True) on a CPU with the CUDA parts replaced: no device check,
    the warm-up on the current stream, EmulatedGraph for the capture; both Adams (the
    Trainer's and the comparison's) fused, which on a CPU cannot be capturable."""
    from fastgan.train import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "cuda_graph_unsupported", lambda device: None)
    monkeypatch.setattr(cuda_graph, "cuda_graph_unsupported", lambda device: None)
    monkeypatch.setattr(cuda_graph, "check_capturable", lambda optimizers: None)
    monkeypatch.setattr(trainer_module, "_adam_options", lambda device, graphed: dict(fused=True))
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: "pool")
    monkeypatch.setattr(cuda_graph.CapturedStep, "_run_eagerly", lambda self: self.step(**self.inputs))

    def capture(self):
        self.outputs, self.graph = None, EmulatedGraph(self)

    monkeypatch.setattr(cuda_graph.CapturedStep, "_capture", capture)
