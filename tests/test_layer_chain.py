"""Runs of fused conv layers as one autograd node (fastgan.ops.chain, through the
FusedSequential that fuse() returns): bit for bit the results of running the layers
one by one (outputs, every gradient, running statistics, double backward, launches),
and the layer-by-layer path wherever a chain would change what the user sees (hooks,
eval mode, no grad, a new call signature)."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch
from torch import nn

import fastgan
from fastgan.bench import dcgan, host
from fastgan.bench.launches import recording_launches
from fastgan.kernels import _plans
from fastgan.nn import fuse
from fastgan.nn.sequential import FusedSequential

CHAIN_NODE = "LayerChainBackward"


def models(momentum=0.1):
    """Small DCGAN G and D (4 px latent input: the generator's first block runs as the
    single-pixel GEMM; blocks, conv + lrelu, transposed conv + tanh), fused."""
    cfg = dcgan.StepConfig(batch=3, size=32, width=2, latent=16)
    G, D = dcgan.make_models(cfg)
    for m in (*G.modules(), *D.modules()):
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum
            with torch.no_grad():  # not the default init: every statistic matters
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.bias.uniform_(-0.5, 0.5)
    return fuse(G), fuse(D)


def by_layers(model):
    """model with its FusedSequentials running their children one by one."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, FusedSequential):
            m.forward = (lambda seq: lambda x: nn.Sequential.forward(seq, x))(m)
    return model


def on_both(model, run):
    """[run(model), run(its copy running the layers one by one)] on backend 'triton'."""
    with fastgan.use_backend("triton"):
        return [run(m) for m in (model, by_layers(model))]


def step(G, D, z, real, it):
    """One G -> D pass of both players' graphs, R1-free: outputs, gradients of z and
    every parameter, buffers after."""
    z = z.clone().requires_grad_(True)
    fake = G(z)
    logits = D(fake) + 0.3 * D(real).sum()
    up = torch.randn(logits.shape, generator=torch.Generator().manual_seed(it))
    grads = torch.autograd.grad(logits, [z, *G.parameters(), *D.parameters()], up)
    return [fake.detach(), logits.detach(), *grads, *[b.clone() for b in (*G.buffers(), *D.buffers())]], fake


def graph_has_chain(t) -> bool:
    """Whether t's autograd graph holds a chain node."""
    todo, seen = [t.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node.name() == CHAIN_NODE:
            return True
        todo += [n for n, _ in node.next_functions]
    return False


def inputs():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(3, 16, generator=gen), torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1


def assert_equal(a, b):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.dtype == y.dtype and x.shape == y.shape, i
        assert torch.equal(x, y), f"item {i}: max difference {(x.double() - y.double()).abs().max().item()}"


def test_fuse_returns_a_fused_sequential_only_where_layers_chain():
    G, D = models()
    assert type(G.body) is FusedSequential and type(D.features) is FusedSequential
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, bias=True), nn.ReLU(), nn.Flatten())
    assert type(fuse(plain)) is nn.Sequential  # one fused layer: nothing to chain
    before = dcgan.make_models(dcgan.StepConfig(batch=3, size=32, width=2, latent=16))[0]
    assert list(fuse(before).state_dict()) == list(before.state_dict())


@pytest.mark.parametrize("momentum", [0.1, None])
def test_chain_matches_the_layers_bit_for_bit(momentum):
    G, D = models(momentum)
    z, real = inputs()
    with fastgan.use_backend("triton"):
        Gl, Dl = by_layers(G), by_layers(D)
        for it in range(2):  # the first call of a signature runs the layers; then chains
            chained, fake = step(G, D, z, real, it)
            assert (fake.grad_fn.name() == CHAIN_NODE) == (it > 0)
            layered, fake = step(Gl, Dl, z, real, it)
            assert fake.grad_fn.name() != CHAIN_NODE
            assert_equal(chained, layered)


def test_settings_changed_after_chaining_are_read_by_the_next_chain():
    """A chain keeps each module's layer settings between calls: a setting changed
    afterwards (a batch norm's eps, an activation's slope, statistics no longer
    tracked) must reach the next chained call, as it reaches the layers."""
    G, D = models()
    z, real = inputs()
    with fastgan.use_backend("triton"):
        Gl, Dl = by_layers(G), by_layers(D)
        D.features(real), Dl.features(real)  # the first call of a signature runs the layers
        for it, change in enumerate([None, "eps", "alpha", "untracked"]):
            for model in (D, Dl):
                conv, block = model.features[0], model.features[2]
                if change == "eps":
                    block.norm.eps = 0.25
                elif change == "alpha":
                    conv.alpha = 0.05
                elif change == "untracked":
                    block.norm.track_running_stats = False
            assert D.features(real).grad_fn.name() == CHAIN_NODE
            assert Dl.features(real).grad_fn.name() != CHAIN_NODE
            assert_equal(step(G, D, z, real, it)[0], step(Gl, Dl, z, real, it)[0])


def r1_step(model, leaf, x):
    """(logits, [R1's gradient with respect to leaf (create_graph=True), the
    parameters' gradients of penalty + loss]) for the input x computed from leaf."""
    logits = model(x)
    (g,) = torch.autograd.grad(logits.sum(), leaf, create_graph=True)
    penalty = g.square().sum() + logits.sum()
    return logits, [g.detach(), *torch.autograd.grad(penalty, list(model.parameters()))]


@pytest.mark.parametrize("leaf_input", [True, False])
def test_r1_through_a_chain_matches_the_layers(leaf_input):
    """R1 on a leaf input runs the layers: the same bits. On a computed input it runs
    through the chain (create_graph backward): the chain's gradients of every order are
    the layers', up to the order of summation (the penalty's and the loss's gradients
    meet per chain, not per layer)."""
    _, D = models()
    _, real = inputs()

    def run(model):
        model(real)  # the signature's first call
        leaf = real.clone().requires_grad_(True)
        logits, grads = r1_step(model, leaf, leaf if leaf_input else leaf * 1.0)
        assert graph_has_chain(logits) == (model is D and not leaf_input)
        return grads

    results = on_both(D, run)
    if leaf_input:
        assert_equal(*results)
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6 * b.abs().max().item()), (a - b).abs().max()


def test_chain_retained_graph_backward_twice_matches_the_layers():
    G, _ = models()
    z, _ = inputs()

    def run(model):
        model(z)  # the signature's first call
        y = model(z)
        up = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
        first = torch.autograd.grad(y, list(model.parameters()), up, retain_graph=True)
        return [*first, *torch.autograd.grad(y, list(model.parameters()), up)]

    assert_equal(*on_both(G, run))


def test_chain_launches_what_the_layers_launch():
    G, D = models()
    z, real = inputs()

    def launches(g, d):
        with fastgan.use_backend("triton"):
            step(g, d, z, real, 0)  # first calls
            with recording_launches() as recorded:
                step(g, d, z, real, 1)
        def meta(a):
            return (a.shape, a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a

        return [(r.name, tuple(r.grid), tuple(map(meta, r.args)),
                 tuple(sorted((k, meta(v)) for k, v in r.kwargs.items()))) for r in recorded]

    chained = launches(G, D)
    layered = launches(by_layers(G), by_layers(D))
    assert sorted(chained, key=repr) == sorted(layered, key=repr)
    assert len(chained) > 20


def test_chain_output_frees_its_graph_without_the_garbage_collector():
    """No reference cycle through the output (its saved activation is the output)."""
    G, _ = models()
    z, _ = inputs()
    with fastgan.use_backend("triton"):
        G(z)
        gc.disable()
        try:
            y = G(z)
            assert y.grad_fn.name() == CHAIN_NODE
            ref = weakref.ref(y.grad_fn)
            del y
            assert ref() is None
        finally:
            gc.enable()


def test_hooks_eval_and_no_grad_run_the_layers():
    G, D = models()
    z, real = inputs()
    with fastgan.use_backend("triton"):
        D(real)
        assert D.features(real).grad_fn.name() == CHAIN_NODE
        seen = []
        handle = D.features[2].register_forward_hook(lambda m, i, o: seen.append(o.shape))
        assert D.features(real).grad_fn.name() != CHAIN_NODE and len(seen) == 1
        handle.remove()
        handle = D.features[4].register_forward_pre_hook(lambda m, i: seen.append("folded"))
        assert D.features(real).grad_fn.name() != CHAIN_NODE and seen[-1] == "folded"
        handle.remove()
        assert D.features(real).grad_fn.name() == CHAIN_NODE
        D.eval()
        assert D.features(real).grad_fn.name() != CHAIN_NODE
        D.train()
        with torch.no_grad():
            tracked = D.features[2].norm.num_batches_tracked.clone()
            assert D.features(real).grad_fn is None
            assert D.features[2].norm.num_batches_tracked == tracked + 1
        assert D.features(real[:2]).grad_fn.name() != CHAIN_NODE  # a new signature
        assert D.features(real[:2]).grad_fn.name() == CHAIN_NODE


def test_reference_backend_runs_the_layers():
    G, _ = models()
    z, _ = inputs()
    with fastgan.use_backend("reference"):
        G(z)
        assert G(z).grad_fn.name() != CHAIN_NODE


def test_chained_training_step_has_no_host_sync(monkeypatch):
    """Three fastgan steps of the DCGAN benchmark (fuse()d models: the generator and
    the discriminator's features as chains) read nothing back to the host."""
    from fastgan.ops import chain
    from test_no_host_sync import forbid_host_sync

    calls = []
    run = chain.run
    monkeypatch.setattr(chain, "run", lambda *args: calls.append(1) or run(*args))
    cfg = dcgan.StepConfig(batch=3, size=32, width=2, latent=16)
    # The optimizers a GPU step builds (fused Adam; the CPU default reads its step count back).
    step = host._as_on_gpu(dcgan.GANStep("fastgan", *dcgan.make_models(cfg), cfg))
    real, c, z = dcgan.make_inputs(cfg, sets=1)[0]
    step(real, c, z)  # first calls of each signature: the layers one by one
    calls.clear()
    with forbid_host_sync():
        for _ in range(2):
            d_loss, g_loss = step(real, c, z)
    assert len(calls) == 2 * 4  # per step: G, and D's features on real, fake, fake again
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)


def test_compile_traces_a_fused_sequential_in_one_graph():
    """torch.compile(fullgraph=True) sees the layers' ops: no graph break in the chain
    checks (a break would raise here)."""
    G, _ = models()
    z, _ = inputs()
    x = z[:, :, None, None]
    with fastgan.use_backend("triton"):
        expected = by_layers(G).body(x)
        compiled = torch.compile(G.body, fullgraph=True, backend="aot_eager")
        compiled(x)
        out = compiled(x)
    assert out.grad_fn.name() != CHAIN_NODE
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_a_run_after_other_modules_chains_from_its_own_input():
    """Linear -> ReLU -> Unflatten, then a run of conv layers: the run chains (its own
    input is 4-D), the modules before it run as they are; the same bits."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(16, 8 * 4 * 4), nn.ReLU(), nn.Unflatten(1, (8, 4, 4)),
                          nn.ConvTranspose2d(8, 4, 4, 2, 1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.ConvTranspose2d(4, 3, 4, 2, 1), nn.Tanh())
    model = fuse(plain)
    assert type(model) is FusedSequential
    z, _ = inputs()

    def run(m):
        m(z)  # the signature's first call
        y = m(z)
        return y, [y.detach(), *torch.autograd.grad(y, list(m.parameters()), torch.ones_like(y))]

    (y_chain, chained), (y_layers, layered) = on_both(model, run)
    assert y_chain.grad_fn.name() == CHAIN_NODE and y_layers.grad_fn.name() != CHAIN_NODE
    assert_equal(chained, layered)


class TapeCounter:
    """Counts the launches that replayed a recorded plan tape (kernels._plans.Tape)
    and the replays that met another launcher than the tape's. Launch programs off:
    a replayed program calls no launcher (tests/test_launch_programs.py)."""

    def __init__(self, monkeypatch):
        monkeypatch.setattr(_plans, "PROGRAMS", False)
        self.replayed = self.broken = 0
        original = _plans.replay

        def replay(name):
            tape = getattr(_plans._frozen, "tape", None)
            was_broken = tape is not None and tape.broken
            plan = original(name)
            if tape is not None and not tape.recording:
                if tape.broken and not was_broken:
                    self.broken += 1
                elif not tape.broken:
                    self.replayed += 1
            return plan

        monkeypatch.setattr(_plans, "replay", replay)


@pytest.mark.parametrize("checked", [False, True])
def test_chain_replays_its_launch_plans_with_the_layers_bits(monkeypatch, checked):
    """From its second chained call of a signature, a chain's forward and backward
    replay the plans they recorded instead of looking each one up by key: the layers'
    bits (unchecked: the replayed plans are the ones launched), and under
    CHECK_TAPES every replayed plan is the very plan its key gives (a mismatch raises)."""
    monkeypatch.setattr(_plans, "CHECK_TAPES", checked)
    _plans.clear()
    counter = TapeCounter(monkeypatch)
    G, D = models()
    z, real = inputs()
    with fastgan.use_backend("triton"):
        Gl, Dl = by_layers(G), by_layers(D)
        for it in range(4):  # layers, chains recording, then chains replaying
            before = counter.replayed
            chained, _ = step(G, D, z, real, it)
            assert_equal(chained, step(Gl, Dl, z, real, it)[0])
            assert (counter.replayed > before) == (it >= 2), it
    assert counter.broken == 0


def test_a_tape_replaying_another_plan_fails_the_check(monkeypatch):
    """CHECK_TAPES catches a tape whose plans are not the ones their keys give (here
    two layers' forward plans swapped): what a signature missing something a plan
    depends on would do."""
    monkeypatch.setattr(_plans, "CHECK_TAPES", True)
    monkeypatch.setattr(_plans, "PROGRAMS", False)
    _plans.clear()
    _, D = models()
    _, real = inputs()
    with fastgan.use_backend("triton"):
        for _ in range(2):
            D.features(real)
        (entries,) = [e for e in _plans._tapes.values() if sum(n == "conv_fwd_bn_stats" for n, _ in e) >= 2]
        first, second = [i for i, (n, _) in enumerate(entries) if n == "conv_fwd_bn_stats"][:2]
        entries[first], entries[second] = entries[second], entries[first]
        with pytest.raises(AssertionError, match="tape"):
            D.features(real)


def test_a_replay_meeting_another_launcher_falls_back_to_the_keys(monkeypatch):
    """A retained graph's second backward finds the links between blocks already used,
    so it launches other kernels than the first under the same signature: its replay
    stops at the first launcher that differs, the rest plans by key (the layers'
    gradients), and the tape is dropped."""
    monkeypatch.setattr(_plans, "CHECK_TAPES", False)
    _plans.clear()
    counter = TapeCounter(monkeypatch)
    G, _ = models()
    z, _ = inputs()

    def run(model):
        up = torch.randn(model(z).shape, generator=torch.Generator().manual_seed(5))
        for _ in range(2):  # record both tapes
            torch.autograd.grad(model(z), list(model.parameters()), up)
        y = model(z)
        first = torch.autograd.grad(y, list(model.parameters()), up, retain_graph=True)
        return [*first, *torch.autograd.grad(y, list(model.parameters()), up)]

    assert_equal(*on_both(G, run))
    assert counter.broken == 1
    assert counter.replayed > 0
