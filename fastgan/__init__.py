"""fastgan: a GAN training engine for PyTorch whose hot path runs in fused Triton kernels.

    import fastgan
    from fastgan import functional as FG, nn as fnn

    fastgan.set_backend("auto")          # Triton on CUDA tensors, PyTorch elsewhere
    y = FG.conv2d_bias_act(x, w, b, stride=2, padding=1, act="lrelu")
    model = fastgan.nn.fuse(my_dcgan)    # Conv -> BN -> act runs become fused modules
    fastgan.Trainer(G, D, data, run_dir="runs/mine").fit(steps=3000)
"""

from . import functional, ops
from ._backend import BACKENDS, get_backend, set_backend, use_backend

__version__ = "0.1.0"

__all__ = ["BACKENDS", "Trainer", "functional", "get_backend", "nn", "ops", "set_backend", "use_backend"]

# Loaded on first use, so that `import fastgan` stays light.
_LAZY_MODULES = ("nn", "models", "data", "train")


def __getattr__(name):
    import importlib

    if name in _LAZY_MODULES:
        return importlib.import_module(f".{name}", __name__)
    if name == "Trainer":
        return importlib.import_module(".train", __name__).Trainer
    raise AttributeError(f"module 'fastgan' has no attribute {name!r}")
