"""Launch programs (kernels._program): a layer chain's forward and backward recorded
once per signature, then replayed as their allocations, views, fills and launches.
A replay must give the bits of the normal run (and of the layers one by one), launch
exactly what the normal run launches, and never replay where the run depends on
something its key does not hold."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import fastgan
from fastgan.bench.launches import recording_launches
from fastgan.kernels import _plans, _program
from fastgan.nn import fuse
from fastgan.nn.sequential import FusedSequential
from test_layer_chain import assert_equal, by_layers, inputs, models, step


class ProgramCounter:
    """Counts the chain runs replayed from a program and those run normally."""

    def __init__(self, monkeypatch):
        self.replayed = self.normal = 0
        original = _program.replay_or_record

        def counted(*args, **kwargs):
            results, replayed = original(*args, **kwargs)
            if replayed:
                self.replayed += 1
            else:
                self.normal += 1
            return results, replayed

        monkeypatch.setattr(_program, "replay_or_record", counted)

    def programs(self):
        return [p for p in _plans.programs.values() if type(p) is _program.Program]


@pytest.fixture
def counter(monkeypatch):
    monkeypatch.setattr(_plans, "PROGRAMS", True)
    monkeypatch.setattr(_plans, "CHECK_TAPES", False)
    _plans.clear()
    return ProgramCounter(monkeypatch)


@pytest.mark.parametrize("checked", [False, True])
def test_replayed_chains_keep_the_layers_bits(monkeypatch, counter, checked):
    """Calls of a signature: the layers, a chain, a chain recording its programs, then
    replays (under the check, every other call runs normally and is compared with
    the program). Every step bit for bit the layers' (outputs, gradients, running
    statistics), with outputs poisoned before every launch, replays included."""
    monkeypatch.setattr(_plans, "CHECK_TAPES", checked)
    G, D = models()
    z, real = inputs()
    replays = []
    with fastgan.use_backend("triton"):
        Gl, Dl = by_layers(G), by_layers(D)
        for it in range(6):
            before = counter.replayed
            chained, _ = step(G, D, z, real, it)
            assert_equal(chained, step(Gl, Dl, z, real, it)[0])
            replays.append(counter.replayed - before)
    # Per step: G's and D's chain (twice) forward and backward.
    assert replays == [0, 0, 0, 6, 0 if checked else 6, 6]
    assert len(counter.programs()) == 6  # G, D on fake, D on real (other strides): forward, backward


def test_a_replay_launches_what_the_normal_run_launches(counter):
    """The same launches in the same order with the same grids, argument metadata
    and constants, as the chain's normal run (programs off)."""
    G, D = models()
    z, real = inputs()

    def launches(programs_on):
        _plans.PROGRAMS = programs_on
        with recording_launches() as recorded:
            step(G, D, z, real, 9)
        def meta(a):
            return (a.shape, a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a

        return [(r.name, tuple(r.grid), tuple(map(meta, r.args)), tuple((k, meta(v)) for k, v in r.kwargs.items()))
                for r in recorded]

    with fastgan.use_backend("triton"):
        for it in range(3):
            step(G, D, z, real, it)
        before = counter.replayed
        replayed = launches(True)
        assert counter.replayed - before == 6
        assert replayed == launches(False)
        assert len(replayed) > 20


def test_momentum_none_is_never_replayed(counter):
    """With momentum=None the running-statistics factor (1 / batches seen) changes every
    call: the program recorded with one factor must not replay another."""
    G, D = models(momentum=None)
    z, real = inputs()
    with fastgan.use_backend("triton"):
        Gl, Dl = by_layers(G), by_layers(D)
        for it in range(5):
            assert_equal(step(G, D, z, real, it)[0], step(Gl, Dl, z, real, it)[0])
    # The backward programs (no factor) replay; no forward does.
    assert counter.replayed == 2 * 3
    assert not any(key[0][0] == "forward" for key, p in _plans.programs.items() if type(p) is _program.Program)


def test_retained_graph_backwards_replay_with_the_layers_bits(counter):
    """A retained graph's second backward finds its links used up: a key of its own
    (the links' state), so each of the two backwards replays its own program."""
    G, _ = models()
    z, _ = inputs()

    def run(model):
        out = []
        for it in range(5):
            y = model(z)
            up = torch.randn(y.shape, generator=torch.Generator().manual_seed(it))
            out += torch.autograd.grad(y, list(model.parameters()), up, retain_graph=True)
            out += torch.autograd.grad(y, list(model.parameters()), up)
        return out

    layered = by_layers(G)
    with fastgan.use_backend("triton"):
        assert_equal(run(G), run(layered))
    backward_keys = [key for key, p in _plans.programs.items() if type(p) is _program.Program and key[0][0] == "backward"]
    assert len(backward_keys) == 2
    assert counter.replayed >= 2 * 3


def blocks(c_in, c_out):
    return [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]


def test_sums_handed_between_chains_replay_with_the_layers_bits(counter):
    """chain -> single block -> chain: the single block computes the first chain's
    backward sums and the second chain those of the single block (BlockLinks across
    autograd nodes); every replay hands them on as the normal run does."""
    torch.manual_seed(0)
    model = nn.Sequential(fuse(nn.Sequential(*blocks(3, 4), *blocks(4, 4))), fuse(nn.Sequential(*blocks(4, 4))),
                          fuse(nn.Sequential(*blocks(4, 4), *blocks(4, 2))))
    assert type(model[0]) is FusedSequential and type(model[2]) is FusedSequential
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)

    def run(m):
        out = []
        for it in range(5):
            y = m(x)
            up = torch.randn(y.shape, generator=torch.Generator().manual_seed(it))
            out += [y.detach(), *torch.autograd.grad(y, list(m.parameters()), up)]
        return out + [b.clone() for b in m.buffers()]

    layered = by_layers(model)
    with fastgan.use_backend("triton"):
        assert_equal(run(model), run(layered))
    assert counter.replayed >= 4 * 2  # both chains, forward and backward, from the fourth call
    # Both handoffs happened in the replays: the first chain's backward read sums.
    assert any(key[0][0] == "backward" and key[0][1][3] for key in _plans.programs)


def test_a_run_reading_tensor_data_keeps_the_normal_path(monkeypatch, counter):
    """Work a program cannot replay (here a value read back to the host, whose answer
    a replay would repeat) makes the recording fail: that signature runs normally,
    with the same bits."""
    from fastgan.ops import chain

    forward = chain.BlockLayer.forward
    monkeypatch.setattr(chain.BlockLayer, "forward", lambda self, x, p, r: (x.sum().item(), forward(self, x, p, r))[1])
    G, D = models()
    z, real = inputs()
    with fastgan.use_backend("triton"):
        Gl, Dl = by_layers(G), by_layers(D)
        for it in range(5):
            assert_equal(step(G, D, z, real, it)[0], step(Gl, Dl, z, real, it)[0])
    forward_keys = [key for key in _plans.programs if key[0][0] == "forward"]
    assert forward_keys and not any(type(_plans.programs[k]) is _program.Program for k in forward_keys)
    assert counter.replayed == 3 * 2  # the backwards (G, D twice), two steps


def test_programs_off_runs_every_call_normally(monkeypatch, counter):
    monkeypatch.setattr(_plans, "PROGRAMS", False)
    G, D = models()
    z, real = inputs()
    with fastgan.use_backend("triton"):
        for it in range(4):
            step(G, D, z, real, it)
    assert counter.replayed == 0 and not _plans.programs


# ------------------------------------------------------- the policy, without kernels
def test_a_key_whose_run_changes_raises_under_the_check():
    """A run that allocates differently on each call under one key: the check's
    second mismatch in a row raises (a signature missing a dependency); without
    the check it is exactly what must never happen, so the check runs in tests."""
    store, size = {}, [1]

    def normal():
        size[0] += 1
        return [torch.empty(size[0])]

    x = torch.zeros(1)
    for _ in range(5):  # 1 normal, 2 recorded, 3 replayed, 4 checked (1st mismatch), 5 replayed
        _program.replay_or_record(store, "k", [x], None, normal, check=True)
    with pytest.raises(AssertionError, match="recorded differently"):
        _program.replay_or_record(store, "k", [x], None, normal, check=True)


def test_temporaries_are_reused_and_what_escapes_is_fresh():
    """An allocation that nothing returned refers to is reused by every replay; the
    returned ones, and the base of a returned view, are allocated per replay."""
    store = {}

    def normal():
        temporary = torch.empty(4)
        temporary.fill_(1.0)
        base = torch.empty(6)
        out = torch.empty(3)
        return [out, base[2:5], temporary.shape[0], (), (out,)]

    x = torch.zeros(1)
    for _ in range(2):
        _program.replay_or_record(store, "k", [x], None, normal)
    program = store["k"]
    assert program.source.count("empty_strided(") == 2  # out and base; the temporary is a global
    first, replayed = _program.replay_or_record(store, "k", [x], None, normal)
    second, _ = _program.replay_or_record(store, "k", [x], None, normal)
    assert replayed and first[2] == 4 and first[3] == () and first[4][0] is first[0]
    assert first[0] is not second[0] and first[1].untyped_storage().data_ptr() != second[1].untyped_storage().data_ptr()
    assert first[1].shape == (3,) and first[1].storage_offset() == 2
    assert program.fresh is not program.replay and program.fresh.__code__ is not program.replay.__code__


def test_a_forward_reuses_intermediates_only_once_nothing_holds_them(counter):
    """A replayed forward takes the intermediates (kept on its autograd context) of an
    earlier replay once that replay's graph is gone, never while it is alive: a live
    graph keeps its own tensors, and its backward gives the layers' gradients."""
    G, _ = models()
    z, _ = inputs()

    def storages(y):
        return {t.untyped_storage().data_ptr() for state in y.grad_fn.states for t in state
                if isinstance(t, torch.Tensor) and t.numel()}

    def grads(model, y, seed):
        up = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed))
        return torch.autograd.grad(y, list(model.parameters()), up)

    layered = by_layers(G)
    with fastgan.use_backend("triton"):
        for _ in range(4):  # layers, chain, chain recording, first replay
            G(z)
        kept = G(z)
        kept_storages = storages(kept)
        y = G(z)  # `kept` is alive: its tensors are not taken
        first = storages(y)
        assert first and not first & kept_storages
        del y
        y = G(z)  # the dead set is taken again, the live one still not
        assert storages(y) == first
        assert_equal(grads(G, kept, 3), grads(layered, layered(z), 3))
        assert_equal(grads(G, y, 4), grads(layered, layered(z), 4))


def test_a_backward_reuses_gradients_only_once_nothing_holds_them(counter):
    """Gradients of a replayed backward (handed to autograd, kept by whoever asked for
    them) are taken again by a later replay only once nothing holds them."""
    G, _ = models()
    z, _ = inputs()
    layered = by_layers(G)
    up = torch.randn(G(z).shape, generator=torch.Generator().manual_seed(5))

    def grads(model):
        return torch.autograd.grad(model(z), list(model.parameters()), up)

    def storages(gs):
        return {g.untyped_storage().data_ptr() for g in gs}

    with fastgan.use_backend("triton"):
        for _ in range(4):  # layers, chain, chain recording, first replay
            grads(G)
        kept = grads(G)
        again = grads(G)  # `kept` is alive: other tensors
        first = storages(again)
        assert not first & storages(kept)
        del again
        assert storages(grads(G)) == first  # the dead set again
        expected = grads(layered)
        assert_equal(kept, expected)
        assert_equal(grads(G), expected)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_replayed_steps_match_the_normal_steps_on_a_gpu(monkeypatch, dtype):
    """Compiled kernels through the direct launch path: six DCGAN training steps with
    launch programs (replays from the fourth on, dead sets reused from the fifth) give
    the bits of six steps without them (losses and every parameter after each step)."""
    from fastgan.bench import dcgan

    monkeypatch.setattr(_plans, "CHECK_TAPES", False)
    cfg = dcgan.StepConfig(batch=8, size=32, width=8, latent=16, dtype=dtype, cond="class", device="cuda")
    inputs = dcgan.make_inputs(cfg)
    on = dcgan.GANStep("fastgan", *dcgan.make_models(cfg), cfg)
    off = dcgan.GANStep("fastgan", *dcgan.make_models(cfg), cfg)
    counter = ProgramCounter(monkeypatch)
    for i in range(6):
        batch = inputs[i % len(inputs)]
        monkeypatch.setattr(_plans, "PROGRAMS", True)
        d0, g0 = on(*batch)
        monkeypatch.setattr(_plans, "PROGRAMS", False)
        d1, g1 = off(*batch)
        assert torch.equal(d0, d1) and torch.equal(g0, g1), i
        for p0, p1 in zip([*on.G.parameters(), *on.D.parameters()], [*off.G.parameters(), *off.D.parameters()]):
            assert torch.equal(p0, p1), i
    assert counter.replayed >= 3 * 8  # steps 4-6: G and D (x3) forward and backward


def test_a_key_whose_run_stops_being_recordable_raises_under_the_check():
    """A run that reads tensor data on the host on some calls of one key: the check
    counts a run it can no longer record as a mismatch, twice in a row raises."""
    store, calls = {}, [0]

    def normal():
        calls[0] += 1
        out = torch.empty(2)
        if calls[0] > 2:
            out.sum().item()  # a host read, from the third call on
        return [out]

    x = torch.zeros(1)
    for _ in range(5):  # 1 normal, 2 recorded, 3 replayed, 4 checked (1st mismatch), 5 replayed
        _program.replay_or_record(store, "k", [x], None, normal, check=True)
    with pytest.raises(AssertionError, match="recorded differently"):
        _program.replay_or_record(store, "k", [x], None, normal, check=True)
