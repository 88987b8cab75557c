"""torch.library custom ops (namespace `fastgan`): registration, fake implementations
and autograd, one module per op family. Importing this package registers them."""

from . import batch_norm, conv, linear, loss

__all__ = ["batch_norm", "conv", "linear", "loss"]
