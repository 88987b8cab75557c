"""CUDA-graph training (fastgan.train.cuda_graph, Trainer(cuda_graph=True)).

On a CPU: a graph replays the launches it recorded, so a step must make the same
launches (kernel, grid, tile and other constexpr choices, scalar arguments, tensor
shapes) every time; the helper's and the Trainer's refusals and checks. On a GPU
(marker gpu): capture + replay equals the eager step bit for bit, resume stays exact,
and the step time is recorded.
"""

import math
import time

import pytest
import torch

import fastgan
from fastgan.bench.launches import recording_launches
from fastgan.data import ArrayData
from fastgan.kernels._common import emulating
from fastgan.models import DCGANDiscriminator, DCGANGenerator
from fastgan.train import Trainer, cuda_graph
from fastgan.train.trainer import GRAPH_WARMUP
from graph_emulation import emulate_cuda_graphs
from test_trainer import full_state


def image_data(n=32, size=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=gen) * 2 - 1
    return ArrayData(x, torch.arange(n) % 3, cond_kind="label", cond_size=3)


def models(size=8, width=4, seed=0):
    torch.manual_seed(seed)
    g = DCGANGenerator(size, 1, width=width, latent_dim=4, extra_layers=1, cond_kind="label", cond_size=3, cond_dim=4)
    d = DCGANDiscriminator(size, 1, width=width, extra_layers=1, cond_kind="label", cond_size=3)
    return g, d


SETTINGS = dict(batch_size=4, n_critic=2, accumulate=2, r1=1.0, ema=0.9, loss="hinge", progress=False)


# ------------------------------------------------------------------ same launches every step
def launch_signature(launch):
    """What a replayed graph fixes about a launch: the kernel, its grid, its constexpr
    and other keyword arguments, its scalar arguments, and each tensor's shape, strides
    and dtype (the addresses differ between eager steps and are fixed in a graph)."""

    def norm(value):
        if isinstance(value, torch.Tensor):
            return ("tensor", tuple(value.shape), value.stride(), value.dtype)
        if isinstance(value, float) and math.isnan(value):
            return ("nan",)
        return value

    return (launch.kernel, launch.grid, tuple(norm(a) for a in launch.args),
            tuple(sorted((k, norm(v)) for k, v in launch.kwargs.items())))


def record_steps(trainer, steps, *, execute):
    sequences = []
    for _ in range(steps):
        with recording_launches(execute=execute) as launches:
            trainer.train_step()
        sequences.append([launch_signature(launch) for launch in launches])
    return sequences


def first_difference(a, b):
    if len(a) != len(b):
        return f"{len(a)} launches, then {len(b)}"
    i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    return f"launch {i}: {a[i]} then {b[i]}"


def test_launches_are_identical_across_steps_as_on_an_h100():
    """Tiles, split-K and every other launch choice made as on sm_90 (132 SMs), for the
    steps of a Trainer with every feature on (R1 on every D update, so every step has
    the same structure); kernels stubbed (execute=False): only the choices matter."""
    trainer = Trainer(*models(), image_data(), **dict(SETTINGS, r1_interval=1))
    with fastgan.use_backend("triton"), emulating("cuda_90", 132):
        first, second, third = record_steps(trainer, 3, execute=False)
    assert len(first) > 100
    assert first == second, first_difference(first, second)
    assert second == third, first_difference(second, third)


def test_launches_are_identical_across_steps_in_the_interpreter():
    """The same with the kernels run (interpreter configs), from the very first step."""
    trainer = Trainer(*models(), image_data(), **dict(SETTINGS, n_critic=1, accumulate=1, r1_interval=1))
    with fastgan.use_backend("triton"):
        first, second = record_steps(trainer, 2, execute=True)
    assert len(first) > 40
    assert first == second, first_difference(first, second)


def test_a_step_of_another_structure_makes_other_launches():
    """The comparison has teeth: a step with the lazy R1 penalty and one without differ
    (which is why the Trainer keeps a graph per R1 pattern)."""
    trainer = Trainer(*models(), image_data(), **dict(SETTINGS, n_critic=1, r1_interval=2))
    assert [trainer._r1_pattern()] == [(True,)]
    with fastgan.use_backend("triton"), emulating("cuda_90", 132):
        with_r1, without_r1 = record_steps(trainer, 2, execute=False)
    assert len(with_r1) > len(without_r1) > 0


# ------------------------------------------------------------------ checks that run anywhere
def test_capturedstep_argument_errors():
    x = torch.zeros(2)
    with pytest.raises(TypeError, match="step must be callable"):
        cuda_graph.CapturedStep(None, {"x": x})
    with pytest.raises(ValueError, match="inputs must be a non-empty mapping"):
        cuda_graph.CapturedStep(lambda: None, {})
    with pytest.raises(TypeError, match=r"inputs\['x'\] must be a tensor"):
        cuda_graph.CapturedStep(lambda x: x, {"x": [1.0]})
    with pytest.raises(ValueError, match="names must be Python identifiers"):
        cuda_graph.CapturedStep(lambda **kw: None, {"not a name": x})
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="warmup must be an int >= 1"):
            cuda_graph.CapturedStep(lambda x: x, {"x": x}, warmup=bad)


def test_capturedstep_refuses_cpu_tensors():
    with pytest.raises(ValueError, match="inputs are on cpu: CUDA graphs record GPU kernels and need a CUDA device"):
        cuda_graph.CapturedStep(lambda x: x * 2, {"x": torch.ones(3)})
    assert "need a CUDA device" in cuda_graph.cuda_graph_unsupported("cpu")


def test_capturedstep_refuses_an_optimizer_that_would_sync():
    p = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match=r"optimizers\[1\] \(Adam\) has capturable=False"):
        cuda_graph.check_capturable([cuda_graph.graph_safe_adam([p]), torch.optim.Adam([p])])
    cuda_graph.check_capturable([cuda_graph.graph_safe_adam([p], lr=1e-3)])
    group = cuda_graph.graph_safe_adam([p]).param_groups[0]
    assert group["fused"] and group["capturable"]


def test_capturedstep_checks_what_is_copied_in(monkeypatch):
    # The copy-in checks are host logic: exercised on CPU tensors with the device check
    # lifted (nothing is captured here).
    monkeypatch.setattr(cuda_graph, "cuda_graph_unsupported", lambda device: None)
    static = torch.zeros(2, 3)
    step = cuda_graph.CapturedStep(lambda x: x.sum(), {"x": static})
    with pytest.raises(ValueError, match="unknown input 'y'"):
        step._copy_in({"y": torch.ones(2, 3)})
    with pytest.raises(ValueError, match=r"input 'x' must be torch.float32 \(2, 3\) \(its static buffer\), got torch.float32 \(3, 2\)"):
        step._copy_in({"x": torch.ones(3, 2)})
    with pytest.raises(ValueError, match="got torch.float64"):
        step._copy_in({"x": torch.ones(2, 3, dtype=torch.float64)})
    assert torch.equal(static, torch.zeros(2, 3))  # nothing copied by a failed call
    step._copy_in({"x": torch.full((2, 3), 5.0)})
    assert step.inputs["x"] is static and torch.equal(static, torch.full((2, 3), 5.0))


def test_trainer_refuses_cuda_graph_without_cuda():
    with pytest.raises(ValueError, match=r"cuda_graph=True: CUDA graphs record GPU kernels and need a CUDA device.*cuda_graph=False"):
        Trainer(*models(), image_data(), device="cpu", cuda_graph=True, progress=False)
    with pytest.raises(ValueError, match="cuda_graph must be True or False"):
        Trainer(*models(), image_data(), device="cpu", cuda_graph="yes", progress=False)


def test_trainer_refuses_a_batch_norm_a_graph_would_freeze():
    g, d = models()
    bn = next(m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.momentum = None
    with pytest.raises(ValueError, match=r"cuda_graph=True: generator module '[\w.]+' is a batch norm with momentum=None"):
        Trainer(g, d, image_data(), device="cpu", cuda_graph=True, progress=False)
    Trainer(g, d, image_data(), device="cpu", progress=False).train_step()  # fine without graphs


def test_optimizer_state_loads_keep_the_trainers_own_update_settings(tmp_path):
    """A checkpoint written with CUDA graphs (capturable, fused Adam) resumes on a CPU
    Trainer with its own (single-tensor) Adam, and the state is loaded exactly."""
    first = Trainer(*models(), image_data(), run_dir=tmp_path, **SETTINGS)
    first.fit(2)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    for key in ("g_optimizer", "d_optimizer"):
        for group in state[key]["param_groups"]:
            group.update(capturable=True, fused=True)
    torch.save(state, tmp_path / "checkpoint.pt")
    resumed = Trainer.from_checkpoint(tmp_path, image_data(), run_dir=tmp_path)
    assert not resumed.d_opt.param_groups[0]["capturable"] and not resumed.d_opt.param_groups[0]["fused"]
    before = full_state(resumed)
    assert all(torch.equal(before[k], v) for k, v in full_state(first).items())
    resumed.fit(3)  # a CPU Adam left capturable would refuse to step here
    assert resumed.step == 3


# ------------------------------------------------------------------ graph mode, emulated on a CPU
@pytest.fixture
def emulated_graphs(monkeypatch):
    emulate_cuda_graphs(monkeypatch)


def test_graph_mode_feeds_each_step_its_own_batch_and_noise(emulated_graphs, tmp_path):
    """The Trainer's graph-mode plumbing (static inputs shared by the R1 patterns'
    graphs, copies of each step's batch, conditions and noise, cloned outputs, warm-up
    counts, resume) gives the eager Trainer's results bit for bit."""
    settings = dict(SETTINGS, n_critic=2, r1_interval=3, checkpoint_every=100, sample_every=100, log_every=1)
    eager = Trainer(*models(), image_data(), **settings)
    graphed = Trainer(*models(), image_data(), cuda_graph=True, **settings)
    history = []
    for step in range(3 * (GRAPH_WARMUP + 2)):
        a, b = eager.train_step(), graphed.train_step()
        history.append(b["d_loss"])
        for key in a:
            assert torch.equal(a[key], b[key]), (step, key)
        sa, sb = full_state(eager), full_state(graphed)
        assert not [k for k in sa if not torch.equal(sa[k], sb[k])], step
    # d_steps 0, 2, 4 (mod 3 -> 0, 2, 1): R1 on D update 0, 1, none -> three graphs.
    assert sorted(graphed._graphs) == [(False, False), (False, True), (True, False)]
    assert all(g.captured and g.calls == GRAPH_WARMUP + 2 for g in graphed._graphs.values())
    assert len({float(d) for d in history}) == len(history)  # outputs were copied, not aliased
    # A checkpoint of the graphed run resumes exactly (graphs made afresh after the load).
    graphed.save(tmp_path / "checkpoint.pt")
    resumed = Trainer.from_checkpoint(tmp_path / "checkpoint.pt", image_data(), cuda_graph=True)
    assert resumed.cuda_graph and resumed._graphs == {}
    for _ in range(2):
        a, b = eager.train_step(), resumed.train_step()
        assert all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = full_state(eager), full_state(resumed)
    assert not [k for k in sa if not torch.equal(sa[k], sb[k])]


# ------------------------------------------------------------------ on a GPU
GPU_SETTINGS = dict(batch_size=16, n_critic=1, r1=1.0, r1_interval=2, ema=0.99, loss="hinge", progress=False,
                    device="cuda", seed=3, checkpoint_every=100, sample_every=1000, log_every=5)


@pytest.mark.gpu
@pytest.mark.parametrize("amp", [False, True])
def test_graph_replay_matches_the_eager_step_bit_for_bit(amp):
    """Both R1 patterns alternate (r1_interval 2): each is warmed up GRAPH_WARMUP times,
    captured, then replayed; after every step the models, optimizer moments, EMA and
    losses equal those of the eager Trainer bit for bit, for 3 replays of each graph."""
    settings = dict(GPU_SETTINGS, amp=amp)
    with fastgan.use_backend("triton"):
        eager = Trainer(*models(16, 8), image_data(64, 16), **settings)
        graphed = Trainer(*models(16, 8), image_data(64, 16), cuda_graph=True, **settings)
        assert graphed.d_opt.param_groups[0]["capturable"] and graphed.d_opt.param_groups[0]["fused"]
        for step in range(2 * (GRAPH_WARMUP + 3)):
            a, b = eager.train_step(), graphed.train_step()
            for key in a:
                assert torch.equal(a[key], b[key]), (step, key, a[key], b[key])
            sa, sb = full_state(eager), full_state(graphed)
            different = [k for k in sa if not torch.equal(sa[k], sb[k])]
            assert not different, f"step {step + 1}: {different[:5]}"
    assert sorted(graphed._graphs) == [(False,), (True,)]
    assert all(g.captured and g.calls == GRAPH_WARMUP + 3 for g in graphed._graphs.values())


@pytest.mark.gpu
def test_graph_run_resumes_exactly(tmp_path):
    """A CUDA-graph run stopped at a checkpoint and resumed (graphs captured afresh)
    ends bit-identical to an eager run without a stop."""
    with fastgan.use_backend("triton"):
        straight = Trainer(*models(16, 8), image_data(64, 16), **GPU_SETTINGS)
        straight.fit(16)
        first = Trainer(*models(16, 8), image_data(64, 16), run_dir=tmp_path, cuda_graph=True, **GPU_SETTINGS)
        first.fit(9)
        resumed = Trainer.from_checkpoint(tmp_path, image_data(64, 16), run_dir=tmp_path, cuda_graph=True)
        assert resumed.step == 9 and resumed.cuda_graph
        resumed.fit(16)
    a, b = full_state(straight), full_state(resumed)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    assert any(g.captured for g in resumed._graphs.values())


@pytest.mark.gpu
def test_step_time_with_and_without_cuda_graphs(record_property):
    """Records ms/step of the eager and the graphed Trainer step (DCGAN-64, width 64,
    batch 64, bf16 autocast); no speed target here (benchmarks hold those)."""
    times = {}
    for graphed in (False, True):
        gen = torch.Generator().manual_seed(0)
        data = ArrayData(torch.rand(256, 3, 64, 64, generator=gen) * 2 - 1)
        torch.manual_seed(0)
        trainer = Trainer(DCGANGenerator(64, 3, width=64, latent_dim=100), DCGANDiscriminator(64, 3, width=64), data,
                          batch_size=64, r1=0.0, progress=False, device="cuda", cuda_graph=graphed)
        for _ in range(GRAPH_WARMUP + 2):
            trainer.train_step()
        torch.cuda.synchronize()
        start, steps = time.perf_counter(), 20
        for _ in range(steps):
            losses = trainer.train_step()
        torch.cuda.synchronize()
        times[graphed] = (time.perf_counter() - start) * 1e3 / steps
        assert torch.isfinite(torch.stack(list(losses.values()))).all()
    record_property("eager_ms_per_step", times[False])
    record_property("cuda_graph_ms_per_step", times[True])
    print(f"\nTrainer step, DCGAN-64 batch 64: eager {times[False]:.3f} ms, CUDA graph {times[True]:.3f} ms")
    assert all(math.isfinite(t) and t > 0 for t in times.values())


def test_autocast_never_caches_weight_casts():
    """With autocast's weight cache on, D's two uses of a weight in one region (real,
    fake) share one cast, their gradients are summed in bf16, and the eager step
    differed from the graphed one in the last bits on an H200. The Trainer and the
    bench's fastgan steps keep it off with or without CUDA graphs; the bench's eager
    provider keeps PyTorch's default."""
    from fastgan.bench import dcgan

    trainer = Trainer(*models(), image_data(), batch_size=4, amp=True, progress=False, device="cpu")
    cfg = dcgan.StepConfig(batch=2, size=8, width=2, latent=4, dtype="bfloat16")
    fast = dcgan.GANStep("fastgan", *dcgan.make_models(cfg), cfg)
    eager = dcgan.GANStep("eager", *dcgan.make_models(cfg), cfg)
    for context in (trainer._autocast(), fast._autocast()):
        assert context._enabled and context._cache_enabled is False
    assert eager._autocast()._enabled and eager._autocast()._cache_enabled is not False
