"""kernels/_launch.py's DirectLaunch on a CPU, against Triton's own launch path.

Compiled kernels cannot run here, so the reference is Triton's real JITFunction.run
(its binder, specialisation, cache key and launch call) with two stand-ins: a driver
that reports device 0 and a stream id, and a compile step that returns a FakeCompiled
which records every `run(...)` call. Whatever JITFunction.run passes to
`compiled.run` is what the direct path must pass, argument for argument."""

import pytest
import torch
import triton.language as tl
from triton import knobs
from triton.backends.compiler import GPUTarget
from triton.runtime.driver import driver
from triton.runtime.jit import JITFunction

from fastgan.bench.launches import recording_launches
from fastgan.kernels import _launch


def _kernel(x_ptr, y_ptr, n, stride, alpha, gain, ACT: tl.constexpr, BLOCK: tl.constexpr,
            HAS_BIAS: tl.constexpr = False, momentum=0.0, keep=1.0, FLAG: tl.constexpr = 7):
    """The shape of fastgan's kernels: tensors, ints, floats, constexprs, a runtime
    argument after a constexpr, defaults of both kinds (bn_normalize's momentum)."""


class FakeCompiled:
    def __init__(self, key):
        self.key, self.calls, self.metadata_calls = key, [], []
        self.function, self.packed_metadata = object(), ("packed",)

    def launch_metadata(self, grid, stream, *args):
        self.metadata_calls.append((grid, stream, args))
        return ("metadata", grid, stream)

    def run(self, *call):
        self.calls.append(call)


class FakeJIT(JITFunction):
    """Triton's JITFunction with a stand-in for the compiler only."""

    def _do_compile(self, key, signature, device, constexprs, options, attrs, warmup):
        compiled = FakeCompiled(key)
        self.compiles.append(compiled)
        self.device_caches[device][0][key] = compiled
        return compiled


class FakeDriver:
    def __init__(self):
        self.device, self.stream = 0, 1000

    def get_current_device(self):
        return self.device

    def get_current_stream(self, device):
        return self.stream + device

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)


@pytest.fixture
def fake(monkeypatch):
    drv = FakeDriver()
    monkeypatch.setattr(driver, "_active", drv)
    monkeypatch.setattr(_launch, "interpreting", lambda: False)  # the suite runs under TRITON_INTERPRET=1
    monkeypatch.setattr(_launch, "_ENABLED", True)
    kernel = FakeJIT(_kernel)
    kernel.compiles = []
    return kernel, drv


def _args(n=64, offset=0, dtype=torch.float32):
    x = torch.randn(n + 8, dtype=dtype)[offset:offset + n]
    return x, torch.empty(n, dtype=dtype), n, 1, 0.5


KW = dict(ACT="relu", BLOCK=32, num_warps=4)


def _calls(kernel):
    return [call for c in kernel.compiles for call in c.calls]


def _same(a, b):
    """Argument lists equal, tensors by identity."""
    assert len(a) == len(b)
    for u, v in zip(a, b):
        if isinstance(u, torch.Tensor) or isinstance(v, torch.Tensor):
            assert u is v
        else:
            assert type(u) is type(v) and u == v


def test_direct_path_passes_what_triton_passes(fake):
    """Second and later launches skip JITFunction.run and call compiled.run with the
    same arguments, in the same order (defaults filled, a runtime keyword argument
    after the constexprs in its place), as JITFunction.run does."""
    kernel, drv = fake
    launch = _launch.DirectLaunch(kernel, (5, 2))
    x, y, n, stride, alpha = _args()
    first = launch(x, y, n, stride, alpha, 2.0, HAS_BIAS=True, momentum=0.25, **KW)
    assert isinstance(first, FakeCompiled) and len(kernel.compiles) == 1
    (reference,) = first.calls  # what JITFunction.run passed
    ran = []
    kernel.run = lambda *a, **k: ran.append(1)  # the normal path must not be taken again
    x2, y2 = torch.randn(64), torch.empty(64)
    drv.stream = 2000
    assert launch(x2, y2, n, stride, alpha, 3.0, HAS_BIAS=True, momentum=0.75, **KW) is first
    assert not ran and len(first.calls) == 2
    direct = first.calls[1]
    # grid, stream (read per launch), function, metadata, hooks, then the arguments.
    assert direct[:4] == (5, 2, 1, 2000) and direct[4] is first.function and direct[5] is first.packed_metadata
    assert direct[7] is knobs.runtime.launch_enter_hook and direct[8] is knobs.runtime.launch_exit_hook
    expect = list(reference[9:])
    expect[:2], expect[5], expect[9] = [x2, y2], 3.0, 0.75
    _same(direct[9:], expect)
    _same(reference[9:], [x, y, n, stride, alpha, 2.0, "relu", 32, True, 0.25, 1.0, 7])


def test_a_wrong_order_or_default_would_be_caught(fake):
    """The comparison above is not vacuous: Triton's order differs from the call's
    order (keywords), so a direct path that passed args + kwargs as given fails it."""
    kernel, _ = fake
    launch = _launch.DirectLaunch(kernel, (1,))
    compiled = launch(*_args(), 2.0, momentum=0.25, **KW)
    launch(*_args(), 2.0, momentum=0.25, **KW)
    reference, direct = compiled.calls
    naive = (*_args()[:5], 2.0, 0.25, "relu", 32)
    assert len(direct[9:]) == 12 and len(naive) != len(direct[9:])
    assert [type(a) for a in direct[9:]] == [type(a) for a in reference[9:]]
    assert direct[9 + 8:] == (False, 0.25, 1.0, 7)  # HAS_BIAS default, momentum, keep default, FLAG default


def test_misaligned_tensor_takes_the_normal_path_and_gets_its_own_kernel(fake):
    kernel, _ = fake
    launch = _launch.DirectLaunch(kernel, (1,))
    aligned = launch(*_args(), 2.0, **KW)
    normal = []
    original = FakeJIT.run

    def counting(self, *a, **k):
        normal.append(1)
        return original(self, *a, **k)

    FakeJIT.run = counting
    try:
        misaligned = launch(*_args(offset=1), 2.0, **KW)  # 4-byte offset: not divisible by 16
        assert normal == [1] and misaligned is not aligned and len(kernel.compiles) == 2
        assert misaligned.key != aligned.key  # Triton specialised it differently
        launch(*_args(offset=1), 2.0, **KW)  # that variant is now served directly
        launch(*_args(offset=4), 2.0, **KW)  # 16 bytes: the aligned kernel, directly
        assert normal == [1] and len(misaligned.calls) == 2 and len(aligned.calls) == 2
    finally:
        FakeJIT.run = original


@pytest.mark.parametrize("change", ["int", "int_type", "float_type", "dtype", "none", "kwarg", "constexpr",
                                    "nargs", "device", "global", "hook", "knob",
                                    "stages_hook"])
def test_anything_else_that_changes_takes_the_normal_path(fake, monkeypatch, change):
    kernel, drv = fake
    launch = _launch.DirectLaunch(kernel, (1,))
    x, y, n, stride, alpha = _args()
    compiled = launch(x, y, n, stride, alpha, 2.0, **KW)
    args, kw = [x, y, n, stride, alpha, 2.0], dict(KW)
    if change == "int":
        args[2] = 17  # another specialisation (not divisible by 16)
    elif change == "int_type":
        args[3] = True  # equal to 1, but a bool (u1), not the constexpr 1
    elif change == "float_type":
        args[4] = 1  # an int where a float was: i32 / constexpr, not fp32
    elif change == "dtype":
        args[0] = torch.randn(64, dtype=torch.float64)
    elif change == "none":
        args[1] = None
    elif change == "kwarg":
        kw["momentum"] = 0.5
    elif change == "constexpr":
        kw["ACT"] = "tanh"
    elif change == "nargs":
        args.append(kw.pop("ACT"))  # the same launch, ACT given positionally: another call shape
    elif change == "device":
        drv.device = 1
    elif change == "global":  # a global the kernel read when it compiled was reassigned
        module_globals = {"X": 1000}
        launch._entry.globals = ((module_globals, "X", module_globals["X"]),)
        module_globals["X"] = 2000
    elif change == "hook":
        kernel.pre_run_hooks.append(lambda *a, **k: None)
    elif change == "stages_hook":  # Triton 3.9 keys the kernel on it
        monkeypatch.setattr(knobs.runtime, "add_stages_inspection_hook", lambda: ("stages", "hash"))
    elif change == "knob":
        monkeypatch.setattr(knobs.compilation, "instrumentation_mode", "fpsan-test")
    taken = []
    original = FakeJIT.run
    monkeypatch.setattr(FakeJIT, "run", lambda self, *a, **k: taken.append(1) or original(self, *a, **k))
    launch(*args, **kw)
    assert taken == [1], change
    assert len(_calls(kernel)) == 2  # launched once each time


def test_hooks_and_metadata_are_read_per_launch(fake):
    kernel, _ = fake
    launch = _launch.DirectLaunch(kernel, (3,))
    compiled = launch(*_args(), 2.0, **KW)
    launch(*_args(), 2.0, **KW)
    assert compiled.calls[1][6] is None and len(compiled.metadata_calls) == 1  # no hook: nothing to build
    seen = []
    knobs.runtime.launch_enter_hook.add(seen.append)
    try:
        launch(*_args(), 2.0, **KW)
    finally:
        knobs.runtime.launch_enter_hook.remove(seen.append)
    assert compiled.calls[2][6] == ("metadata", (3,), 1000) and compiled.metadata_calls[-1][0] == (3,)


def test_off_under_the_interpreter_recording_and_the_switch(fake, monkeypatch):
    kernel, _ = fake
    calls = []
    original = FakeJIT.run
    monkeypatch.setattr(FakeJIT, "run", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))

    def twice(launch):
        calls.clear()
        launch(*_args(), 2.0, **KW)
        launch(*_args(), 2.0, **KW)
        return len(calls)

    assert twice(_launch.DirectLaunch(kernel, (1,))) == 1  # on: only the first launch
    with _launch.direct_launches(False):
        assert twice(_launch.DirectLaunch(kernel, (1,))) == 2
    served = _launch.DirectLaunch(kernel, (1,))
    twice(served)
    with _launch.direct_launches(False):  # also for a launch that has its kernel already
        assert twice(served) == 2
    with recording_launches() as launches:
        assert twice(served) == 2
    assert len(launches) == 2  # every launch recorded
    with recording_launches(execute=False, record=False):
        calls.clear()
        served(*_args(), 2.0, **KW)
        assert calls == []  # stubbed out, not launched directly either
    monkeypatch.setattr(_launch, "interpreting", lambda: True)
    assert twice(_launch.DirectLaunch(kernel, (1,))) == 2


def _kernel2(x_ptr, n, BLOCK: tl.constexpr):
    """A kernel this module binds (replaced below by its JIT function)."""


def test_the_kernel_the_module_binds_at_launch_time_is_launched(fake, monkeypatch):
    """As `kernel[grid](...)` in a launcher read the module's kernel at each launch,
    a kernel replaced in its module (tests do) is what the next launch runs."""
    original = FakeJIT(_kernel2)
    original.compiles = []
    monkeypatch.setitem(globals(), "_kernel2", original)  # as @triton.jit binds it
    launch = _launch.DirectLaunch(original, (1,))
    launch(torch.zeros(4), 4, BLOCK=4)
    launch(torch.zeros(4), 4, BLOCK=4)
    assert len(original.compiles[0].calls) == 2  # the second directly
    replaced = []

    class Stand:
        def __getitem__(self, grid):
            return lambda *a, **k: replaced.append((grid, a, k))

    monkeypatch.setitem(globals(), "_kernel2", Stand())
    launch(torch.zeros(4), 4, BLOCK=4)
    assert len(replaced) == 1 and len(original.compiles[0].calls) == 2


def test_environment_switch_is_read_at_import(tmp_path):
    import subprocess
    import sys

    code = "from fastgan.kernels import _launch; print(_launch._ENABLED)"
    for value, expect in (("0", "False"), ("1", "True"), (None, "True")):
        env = {k: v for k, v in __import__("os").environ.items() if k != "FASTGAN_DIRECT_LAUNCH"}
        if value is not None:
            env["FASTGAN_DIRECT_LAUNCH"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.stdout.strip() == expect, out.stderr


def test_interpreter_kernels_launch_as_before():
    """Under the interpreter (this suite) the launchers run through DirectLaunch and
    compute what they did: a real kernel through the normal path."""
    from fastgan.kernels import loss as KS

    assert not _launch.enabled()
    real, fake_ = torch.randn(37), torch.randn(21)
    out = KS.d_loss_fwd(real, fake_, "hinge", 1.0, "mean")
    expect = torch.relu(1 - real).mean() + torch.relu(1 + fake_).mean()
    torch.testing.assert_close(out[0] + out[1], expect)
