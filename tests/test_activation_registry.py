"""The activation registry (fastgan.reference.activations): the built-in rows stand
for the PyTorch modules they name; every row has its formulas on every backend and
passes forward and gradient checks through conv2d, conv_transpose2d, linear and batch
norm on the reference backend and the Triton kernels (the interpreter); fuse() and
validation read the rows; and a row added from outside (tests/gelu_row.py, a
test-only gelu) reaches every backend's tests without another file changing."""

import os
import pathlib
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from torch import nn

import fastgan
from fastgan import _validate as V
from fastgan import functional as FG
from fastgan.kernels import activation as KA
from fastgan.nn import fuse
from fastgan.reference import activations as A
from strategies import conv_case, seeds
from test_functional import check_against_torch, conv_inputs, torch_act
from utils import Rand, assert_close, derivative_bound, grads, leaf

TESTS = pathlib.Path(__file__).resolve().parent
# The built-in rows: (the torch.nn module each replaces, the saved tensor, PyTorch's
# function for it). Pinned here because test_functional.torch_act, the oracle of the
# op tests, is built from the rows' modules.
BUILT_IN = {
    "linear": (None, None, lambda z: z),
    "relu": (nn.ReLU, "y", F.relu),
    "lrelu": (nn.LeakyReLU, "y", lambda z: F.leaky_relu(z, 0.3)),
    "tanh": (nn.Tanh, "y", torch.tanh),
    "sigmoid": (nn.Sigmoid, "y", torch.sigmoid),
    "silu": (nn.SiLU, "z", F.silu),
}


def test_built_in_rows_stand_for_their_pytorch_modules():
    assert tuple(A.ACTIVATIONS)[: len(BUILT_IN)] == tuple(BUILT_IN)
    z = torch.randn(64, dtype=torch.float64) * 3
    for name, (module, saves, plain) in BUILT_IN.items():
        row = A.lookup(name)
        assert row.module is module and row.saves == saves, name
        torch.testing.assert_close(row.torch_module(0.3)(z), plain(z), msg=name)
        torch.testing.assert_close(A.activation(z, name, 0.3), plain(z), msg=name)
    assert [r.name for r in A.rows() if r.uses_alpha][:1] == ["lrelu"]
    assert {r.name for r in A.rows() if not r.has_second_derivative} >= {"linear", "relu", "lrelu"}


def test_registry_refuses_a_duplicate_and_names_the_rows():
    with pytest.raises(ValueError, match="already registered"):
        A.register(A.lookup("relu"))
    with pytest.raises(ValueError, match="already registered"):
        KA.register("relu", KA.relu_forward, KA.relu_derivative)
    with pytest.raises(ValueError, match=r"act must be one of \('linear', 'relu'"):
        A.lookup("swish")
    with pytest.raises(ValueError, match="saves must be one of"):
        A.Activation("odd", lambda z, a: z, lambda s, a, g: s, saves="x")
    assert repr(A.ACTIVATIONS) == repr(tuple(A.ACTIVATIONS)) and "relu" in A.ACTIVATIONS and 3 not in A.ACTIVATIONS


@pytest.mark.parametrize("act", A.ACTIVATIONS)
def test_every_row_has_its_formulas_and_is_read_by_validation_and_fuse(act):
    row = A.lookup(act)
    assert act in KA._Formulas.by_name, f"{act} has no Triton formulas"
    assert V.activation(act, None, None, None) == (act, row.default_alpha, row.default_gain, None)
    if row.module is None:
        return
    plain = nn.Sequential(nn.Linear(3, 4), row.torch_module(0.1))
    fused = fuse(plain)
    assert isinstance(fused[0], fastgan.nn.LinearAct) and fused[0].act == act
    assert fused[0].alpha == (0.1 if row.module_alpha else row.default_alpha)
    x = torch.randn(5, 3)
    torch.testing.assert_close(fused(x), plain(x), atol=1e-6, rtol=1e-5)


# ------------------------------------------------------------------ every row, every backend
BACKENDS = ["reference", "triton"]
EPILOGUE = st.fixed_dictionaries(dict(alpha=st.sampled_from([None, 0.1]), gain=st.sampled_from([None, 1.7]),
                                      clamp=st.sampled_from([None, 0.8])))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", A.ACTIVATIONS)
@settings(max_examples=2)
@given(conv=st.booleans().flatmap(lambda t: st.tuples(st.just(t), conv_case(t, max_spatial=5, max_channels=4))),
       epilogue=EPILOGUE, seed=seeds)
def test_conv_covers_every_row(backend, act, conv, epilogue, seed):
    transposed, case = conv
    rand = Rand(seed)
    x, w, b = conv_inputs(case, torch.float32, transposed, rand)
    geo = dict(stride=case["stride"], padding=case["padding"])
    if transposed:
        geo["output_padding"] = case["output_padding"]
    fast_fn, plain_fn = (FG.conv_transpose2d_bias_act, F.conv_transpose2d) if transposed else (FG.conv2d_bias_act,
                                                                                                F.conv2d)
    ep = dict(act=act, **epilogue)
    with fastgan.use_backend(backend):
        check_against_torch(lambda x, w, b: fast_fn(x, w, b, **geo, **ep),
                            lambda x, w, b: torch_act(plain_fn(x, w, b, **geo), **ep),
                            lambda x, w, b: plain_fn(x, w, b, **geo), ep, [x, w, b], torch.float32, rand)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", A.ACTIVATIONS)
@settings(max_examples=2)
@given(rows=st.integers(1, 6), k=st.integers(1, 20), n=st.integers(1, 20), epilogue=EPILOGUE, seed=seeds)
def test_linear_covers_every_row(backend, act, rows, k, n, epilogue, seed):
    rand = Rand(seed)
    x, w, b = leaf(rand(rows, k)), leaf(rand(n, k, scale=k**-0.5)), leaf(rand(n))
    ep = dict(act=act, **epilogue)
    with fastgan.use_backend(backend):
        check_against_torch(lambda x, w, b: FG.linear_bias_act(x, w, b, **ep),
                            lambda x, w, b: torch_act(F.linear(x, w, b), **ep),
                            lambda x, w, b: F.linear(x, w, b), ep, [x, w, b], torch.float32, rand)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", A.ACTIVATIONS)
@settings(max_examples=2)
@given(n=st.integers(2, 4), c=st.integers(1, 6), hw=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       training=st.booleans(), alpha=st.sampled_from([None, 0.1]), seed=seeds)
def test_batch_norm_covers_every_row(backend, act, n, c, hw, training, alpha, seed):
    rand = Rand(seed)
    x, w, b = leaf(rand(n, c, *hw, scale=2.0)), leaf(rand(c)), leaf(rand(c))
    rm, rv = rand(c), rand(c).abs() + 0.5
    with fastgan.use_backend(backend):
        y = FG.batch_norm_act(x, rm.clone(), rv.clone(), w, b, training=training, act=act, alpha=alpha)
    ref_in = [leaf(t.detach().double()) for t in (x, w, b)]
    ref = torch_act(F.batch_norm(ref_in[0], rm.double(), rv.double(), ref_in[1], ref_in[2], training, 0.1, 1e-5),
                    act, alpha, None, None)
    assert_close(y, ref, torch.float32, "forward")
    up = rand(*y.shape)
    # Every gradient is a channel sum of signed terms: measured against the sizes of
    # the terms (see utils.rel_err and tests/test_batch_norm.py).
    x64 = x.detach().double()
    mean = x64.mean(dim=(0, 2, 3)) if training else rm.double()
    var = x64.var(dim=(0, 2, 3), unbiased=False) if training else rv.double()
    rstd = torch.rsqrt(var + 1e-5).view(1, -1, 1, 1)
    gz = up.double().abs() * derivative_bound(act, alpha, None)
    xhat = ((x64 - mean.view(1, -1, 1, 1)) * rstd).abs()
    magnitude = {"x": gz * rstd * w.detach().double().abs().view(1, -1, 1, 1) * (1 + xhat),
                 "weight": (gz * xhat).sum(dim=(0, 2, 3)), "bias": gz.sum(dim=(0, 2, 3))}
    for name, g, r in zip(["x", "weight", "bias"], grads(y, [x, w, b], up), grads(ref, ref_in, up.double())):
        assert_close(g, r, torch.float32, f"grad {name}", magnitude=magnitude[name])


def test_the_formulas_are_in_every_kernels_cache_key():
    """Triton does not hash what a constexpr_function returns: the formulas reach the
    kernels' cache keys through kernels.activation.FORMULAS_KEY, a constexpr every
    kernel reads. Compiled mode (the interpreter has no cache), in a fresh process."""
    code = (
        "from fastgan.kernels import activation as KA, batch_norm as KB, conv as KC, linear as KL\n"
        "for kernel in (KL._gemm_kernel, KC._conv_gather_kernel, KC._conv_wgrad_kernel, KB._bn_normalize_kernel):\n"
        "    kernel.cache_key\n"
        "    assert ('FORMULAS_KEY', id(KA.__dict__)) in kernel.used_global_vals, kernel\n"
        "before = KA._formulas_key()\n"
        "KA._Formulas.by_name['relu'] = (KA.relu_forward, KA.lrelu_derivative)\n"
        "assert KA._formulas_key() != before\n"
    )
    env = dict(os.environ, TRITON_INTERPRET="0")
    done = subprocess.run([sys.executable, "-c", code], cwd=TESTS.parent, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


# ------------------------------------------------------------------ a row added from outside
# The tests that parametrize over the registry, run with the test-only gelu row loaded
# as a plugin: every one of them must collect a gelu case and pass it.
GELU_TESTS = [
    "test_activation_registry.py",
    "kernels/test_activation_kernels.py",
    "test_activation_edges.py",
    "test_double_backward.py",
]


def test_a_row_added_from_outside_reaches_every_backend():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "gelu_row", "-p", "no:cacheprovider", "-k",
            "gelu and not reaches_every_backend", *GELU_TESTS]
    done = subprocess.run(args, cwd=TESTS, env=env, capture_output=True, text=True, timeout=1200)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert "failed" not in summary and "skipped" not in summary and "error" not in summary, summary
    # Per file: 1 + 6 (conv, linear, bn x 2 backends) here, 6 + 6 table cases, 4 edge
    # cases, 2 conv-family second-order cases.
    assert passed == 7 + 12 + 4 + 2, summary
