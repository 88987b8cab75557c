"""Hypothesis strategies for op arguments, shared by the reference and kernel tests."""

from __future__ import annotations

from hypothesis import strategies as st

from fastgan.reference.activations import ACTIVATIONS, lookup

seeds = st.integers(0, 2**31 - 1)
channels = st.one_of(st.sampled_from([1, 3]), st.integers(1, 9))
spatial = st.one_of(st.just(1), st.integers(1, 9))


@st.composite
def activation(draw):
    act = draw(st.sampled_from(ACTIVATIONS))
    alpha = draw(st.sampled_from([None, 0.1, 0.3])) if lookup(act).uses_alpha else None
    gain = draw(st.sampled_from([None, None, 0.5, 1.7]))
    clamp = draw(st.sampled_from([None, None, 0.8, 2.5]))
    return dict(act=act, alpha=alpha, gain=gain, clamp=clamp)


@st.composite
def conv_case(draw, transposed: bool, max_spatial: int = 9, max_channels: int = 9):
    """Shapes and geometry of a valid conv2d / conv_transpose2d call."""
    n = draw(st.integers(1, 3))
    c_in = draw(st.one_of(st.sampled_from([1, 3]), st.integers(1, max_channels)))
    c_out = draw(st.one_of(st.sampled_from([1, 3]), st.integers(1, max_channels)))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    if transposed:
        output_padding = tuple(draw(st.integers(0, s - 1)) for s in stride)
        h = draw(st.integers(1, max_spatial))
        w = draw(st.integers(1, max_spatial))
        out = [(d - 1) * s - 2 * p + kk + op for d, s, p, kk, op in zip((h, w), stride, padding, k, output_padding)]
    else:
        output_padding = (0, 0)
        # Draw the input size so the output is at least 1 x 1.
        h = draw(st.integers(max(1, k[0] - 2 * padding[0]), max(max_spatial, k[0])))
        w = draw(st.integers(max(1, k[1] - 2 * padding[1]), max(max_spatial, k[1])))
        out = [(d + 2 * p - kk) // s + 1 for d, p, kk, s in zip((h, w), padding, k, stride)]
    from hypothesis import assume

    assume(min(out) >= 1)
    return dict(
        n=n, c_in=c_in, c_out=c_out, h=h, w=w, kernel=k, stride=stride, padding=padding,
        output_padding=output_padding, bias=draw(st.booleans()), channels_last=draw(st.booleans()),
    )
