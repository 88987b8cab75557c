"""GAN models built from fastgan's fused blocks, unconditional or conditioned on a
user's class label, attribute vector or user id.

    from fastgan.models import DCGANGenerator, DCGANDiscriminator
    G = DCGANGenerator(size=32, channels=3, width=64, cond_kind="label", cond_size=10)
    D = DCGANDiscriminator(size=32, channels=3, width=64, cond_kind="label", cond_size=10)
    logits = D(G(torch.randn(8, 100), labels), labels)

Every model has config(): its constructor arguments as plain data; build(config)
makes the model again (this is how checkpoints rebuild their models).
"""

from __future__ import annotations

from torch import nn

from .condition import COND_KINDS, Condition
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .mlp import MLPDiscriminator, MLPGenerator
from .norm import ConditionalBatchNorm

MODELS = {cls.__name__: cls for cls in (DCGANGenerator, DCGANDiscriminator, MLPGenerator, MLPDiscriminator)}

__all__ = [
    "COND_KINDS",
    "Condition",
    "ConditionalBatchNorm",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "MLPDiscriminator",
    "MLPGenerator",
    "MODELS",
    "build",
]


def build(config: dict) -> nn.Module:
    """The model that config (a model's config()) describes, freshly initialised."""
    if not isinstance(config, dict) or config.get("model") not in MODELS:
        raise ValueError(f"a model config must be a dict whose 'model' is one of {tuple(MODELS)}, got {config!r}")
    kwargs = {k: v for k, v in config.items() if k != "model"}
    return MODELS[config["model"]](**kwargs)
