"""fastgan: a GAN training engine for PyTorch whose hot path runs in fused Triton kernels.

    import fastgan
    from fastgan import functional as FG, nn as fnn

    fastgan.set_backend("auto")          # Triton on CUDA tensors, PyTorch elsewhere
    y = FG.conv2d_bias_act(x, w, b, stride=2, padding=1, act="lrelu")
    model = fastgan.nn.fuse(my_dcgan)    # Conv -> BN -> act runs become fused modules
"""

from . import functional, ops
from ._backend import BACKENDS, get_backend, set_backend, use_backend

__version__ = "0.1.0"

__all__ = ["BACKENDS", "functional", "get_backend", "nn", "ops", "set_backend", "use_backend"]


def __getattr__(name):
    # fastgan.nn imports torch.nn machinery; load it on first use.
    if name == "nn":
        import importlib

        return importlib.import_module(".nn", __name__)
    raise AttributeError(f"module 'fastgan' has no attribute {name!r}")
