"""Bad input raises ValueError/TypeError naming the argument, before any kernel runs."""

import pytest
import torch

from fastgan import functional as FG
from fastgan.nn import BatchNormAct2d, Conv2dAct, ConvTranspose2dAct, GANLoss, LinearAct

x4 = torch.randn(2, 3, 8, 8)
w4 = torch.randn(4, 3, 3, 3)


def raises(exc, match, fn, *args, **kwargs):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


def test_rank():
    raises(ValueError, r"x must be a 4-D tensor, got 3-D", FG.conv2d_bias_act, torch.randn(3, 8, 8), w4)
    raises(ValueError, r"weight must be a 4-D tensor", FG.conv_transpose2d_bias_act, x4, torch.randn(3, 4, 3))
    raises(ValueError, r"bias must be a 1-D tensor", FG.conv2d_bias_act, x4, w4, torch.randn(4, 1))
    raises(ValueError, r"weight must be a 2-D tensor", FG.linear_bias_act, torch.randn(2, 3), torch.randn(3))
    raises(ValueError, r"x must be a 2-D or 3-D or 4-D tensor", FG.batch_norm_act, torch.randn(2, 3, 4, 4, 1), None, None,
           training=True)


def test_channels():
    raises(ValueError, r"weight expects 5 input channels .* but x has 3", FG.conv2d_bias_act, x4, torch.randn(4, 5, 3, 3))
    raises(ValueError, r"weight expects 4 input channels .*\[C_in, C_out, kh, kw\]\) but x has 3",
           FG.conv_transpose2d_bias_act, x4, torch.randn(4, 3, 3, 3))
    raises(ValueError, r"bias must have 4 elements", FG.conv2d_bias_act, x4, w4, torch.randn(5))
    raises(ValueError, r"weight expects 7 input features", FG.linear_bias_act, torch.randn(2, 3), torch.randn(4, 7))
    raises(ValueError, r"running_mean must have 3 elements", FG.batch_norm_act, x4, torch.zeros(2), torch.ones(2), training=True)


def test_device():
    raises(ValueError, r"weight is on meta but x is on cpu", FG.conv2d_bias_act, x4, w4.to("meta"))
    raises(ValueError, r"fake_logits is on meta but real_logits is on cpu",
           FG.discriminator_loss, torch.randn(3), torch.randn(3, device="meta"))


def test_dtype():
    raises(TypeError, r"x must be float16, bfloat16, float32 or float64, got torch.int64",
           FG.conv2d_bias_act, x4.long(), w4)
    raises(TypeError, r"weight has dtype torch.float64 but x has torch.float32", FG.conv2d_bias_act, x4, w4.double())
    raises(TypeError, r"x must be a torch.Tensor, got list", FG.linear_bias_act, [1.0], torch.randn(1, 1))
    raises(TypeError, r"real_logits must be float16", FG.discriminator_loss, torch.ones(3, dtype=torch.int32), torch.ones(3))


def test_stride_padding_and_size():
    raises(ValueError, r"stride must be positive, got 0", FG.conv2d_bias_act, x4, w4, stride=0)
    raises(ValueError, r"stride must be positive", FG.conv_transpose2d_bias_act, x4, torch.randn(3, 2, 3, 3), stride=(1, -1))
    raises(ValueError, r"padding must be >= 0", FG.conv2d_bias_act, x4, w4, padding=-1)
    raises(TypeError, r"stride must be an int or a pair of ints", FG.conv2d_bias_act, x4, w4, stride=1.5)
    raises(ValueError, r"output_padding must be smaller than stride", FG.conv_transpose2d_bias_act,
           x4, torch.randn(3, 2, 3, 3), stride=2, output_padding=2)
    raises(ValueError, r"too small for a \(9, 9\) convolution", FG.conv2d_bias_act, x4, torch.randn(4, 3, 9, 9))
    raises(ValueError, r"padding must be an int or a pair of ints, got 'same'", Conv2dAct, 3, 4, 3, padding="same")


def test_act_and_its_parameters():
    raises(ValueError, r"act must be one of .*got 'gelu'", FG.conv2d_bias_act, x4, w4, act="gelu")
    raises(ValueError, r"act must be one of", LinearAct, 3, 4, act="swish")
    raises(ValueError, r"alpha must be >= 0", FG.linear_bias_act, torch.randn(2, 3), torch.randn(4, 3), act="lrelu", alpha=-0.1)
    raises(ValueError, r"gain must be positive", FG.conv2d_bias_act, x4, w4, gain=0.0)
    raises(ValueError, r"clamp must be positive", FG.conv2d_bias_act, x4, w4, clamp=-1.0)
    raises(ValueError, r"gain must be a finite number", FG.conv2d_bias_act, x4, w4, gain=float("nan"))
    raises(ValueError, r"act must be one of", BatchNormAct2d, 4, act="elu")


def test_kind_reduction_and_label():
    raises(ValueError, r"kind must be one of .*got 'relativistic'", FG.generator_loss, torch.randn(3), "relativistic")
    raises(ValueError, r"reduction must be one of .*got 'avg'", FG.discriminator_loss, torch.randn(3), torch.randn(3), reduction="avg")
    raises(ValueError, r"real_label must be 1.0 for kind='hinge'", FG.discriminator_loss,
           torch.randn(3), torch.randn(3), "hinge", real_label=0.9)
    raises(ValueError, r"kind must be one of", GANLoss, "wgan")


def test_groups_and_dilation():
    raises(ValueError, r"groups=3 is not supported", FG.conv2d_bias_act, x4, torch.randn(3, 1, 3, 3), groups=3)
    raises(ValueError, r"dilation=2 is not supported", FG.conv2d_bias_act, x4, w4, dilation=2)
    raises(ValueError, r"dilation=\(1, 2\) is not supported", FG.conv_transpose2d_bias_act,
           x4, torch.randn(3, 2, 3, 3), dilation=(1, 2))


def test_module_arguments_without_a_fused_form():
    """The fused modules take nn.Conv2d's / nn.ConvTranspose2d's arguments; those the
    kernels have no form for are refused by name, the defaults accepted."""
    raises(ValueError, r"groups=2 is not supported", Conv2dAct, 4, 4, 3, groups=2)
    raises(ValueError, r"dilation=2 is not supported", Conv2dAct, 4, 4, 3, dilation=2)
    raises(ValueError, r"padding_mode='reflect' is not supported", Conv2dAct, 4, 4, 3, padding_mode="reflect")
    raises(ValueError, r"groups=2 is not supported", ConvTranspose2dAct, 4, 4, 3, groups=2)
    raises(ValueError, r"dilation=\(2, 1\) is not supported", ConvTranspose2dAct, 4, 4, 3, dilation=(2, 1))
    raises(ValueError, r"padding_mode='circular' is not supported", ConvTranspose2dAct, 4, 4, 3, padding_mode="circular")
    conv = Conv2dAct(4, 5, 3, 1, 1, 1, 1, False, "zeros", act="relu")  # nn.Conv2d's positional order
    assert conv.bias is None and conv.padding == (1, 1)
    assert ConvTranspose2dAct(4, 5, 3, 2, 1, 1, 1, True, 1, "zeros").output_padding == (1, 1)


def test_zero_size_shapes_pytorch_refuses():
    """A batch of 0 or no input channels is legal (tests/test_zero_size.py); these
    shapes are errors in PyTorch too, and here they name the argument."""
    raises(ValueError, r"x has spatial size \(0, 8\)", FG.conv2d_bias_act, torch.randn(2, 3, 0, 8), w4, padding=2)
    raises(ValueError, r"x has spatial size \(8, 0\)", FG.conv_transpose2d_bias_act, torch.randn(2, 3, 8, 0),
           torch.randn(3, 2, 3, 3))
    raises(ValueError, r"weight has 0 output channels", FG.conv2d_bias_act, x4, torch.randn(0, 3, 3, 3))
    raises(ValueError, r"weight has shape \(3, 0, 3, 3\)", FG.conv_transpose2d_bias_act, x4, torch.randn(3, 0, 3, 3))
    raises(ValueError, r"weight has shape \(0, 2, 3, 3\)", FG.conv_transpose2d_bias_act, torch.randn(2, 0, 8, 8),
           torch.randn(0, 2, 3, 3))
    raises(ValueError, r"x has 0 channels", FG.batch_norm_act, torch.randn(2, 0, 4), None, None, training=True)
    # F.conv2d accepts this one but returns [2, 0, 6, 6], dropping C_out and the bias.
    raises(ValueError, r"x has 0 channels", FG.conv2d_bias_act, torch.randn(2, 0, 8, 8), torch.randn(4, 0, 3, 3))


def test_batch_norm_specifics():
    raises(ValueError, r"running_mean and running_var are required when training=False",
           FG.batch_norm_act, x4, None, None, training=False)
    raises(ValueError, r"more than 1 when training", FG.batch_norm_act, torch.randn(1, 3, 1, 1), None, None, training=True)
    raises(ValueError, r"more than 1 when training", FG.batch_norm_act, torch.randn(1, 3, 1), None, None, training=True)
    raises(TypeError, r"training must be a bool", FG.batch_norm_act, x4, None, None, training=1)
    raises(ValueError, r"eps must be positive", FG.batch_norm_act, x4, None, None, training=True, eps=0.0)


def test_errors_come_before_any_kernel(monkeypatch):
    """A bad call never reaches the custom op (so no kernel can run on bad input)."""
    import fastgan.ops.conv as conv_ops

    def boom(*args, **kwargs):
        raise AssertionError("the backend was called")

    monkeypatch.setattr(conv_ops, "_impl", boom)
    raises(ValueError, r"act must be one of", FG.conv2d_bias_act, x4, w4, act="nope")
    raises(ValueError, r"stride must be positive", FG.conv2d_bias_act, x4, w4, stride=0)
