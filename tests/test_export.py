"""`fastgan export` and fastgan.export: the decompositions that replace fastgan's custom
ops in an exported graph, the exported program against the fused generator for every
kind of condition, one real AOTInductor package, and the command's one-line errors.
(The C++ sampler's end-to-end test is the ctest in CMakeLists.txt.)"""

import pytest
import torch
from torch import nn

import fastgan.functional as FG
from checkpoints import image_models, randomize, vector_models, write_checkpoint
from fastgan.cli import main
from fastgan.export import ExportError, decompositions, example_inputs, export_program
from fastgan.reference.activations import ACTIVATIONS
from fastgan.train import load_generator


def one_line_error(argv, capsys, match):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("fastgan export: error: "), err
    assert match in err[0], err[0]


# ---------------------------------------------------------------------- decompositions
EPILOGUES = [(act, alpha, gain, clamp) for act in ACTIVATIONS for alpha, gain, clamp in [(0.2, 1.0, None), (0.1, 1.7, 0.5)]]


@pytest.mark.parametrize("act,alpha,gain,clamp", EPILOGUES)
def test_decompositions_equal_the_ops(act, alpha, gain, clamp):
    table = decompositions()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 5, generator=gen)
    for transposed in (False, True):
        w = torch.randn(*((3, 4) if transposed else (4, 3)), 3, 3, generator=gen)
        b = torch.randn(4, generator=gen)
        args = (x, w, b, [2, 2], [1, 1], [1, 1] if transposed else [0, 0], transposed, act, alpha, gain, clamp)
        op = torch.ops.fastgan.conv_bias_act.default
        torch.testing.assert_close(table[op](*args)[0], op(*args)[0], rtol=1e-5, atol=1e-6)
    xl, wl, bl = torch.randn(6, 5, generator=gen), torch.randn(4, 5, generator=gen), torch.randn(4, generator=gen)
    op = torch.ops.fastgan.linear_bias_act.default
    args = (xl, wl, bl, act, alpha, gain, clamp)
    torch.testing.assert_close(table[op](*args)[0], op(*args)[0], rtol=1e-5, atol=1e-6)
    if gain == 1.0:  # batch norm has no gain or clamp
        mean, var = torch.randn(3, generator=gen), torch.rand(3, generator=gen) + 0.5
        weight, bias = torch.randn(3, generator=gen), torch.randn(3, generator=gen)
        op = torch.ops.fastgan.batch_norm_act.default
        for training in (False, True):
            args = (x, weight, bias, mean, var, training, 1e-5, act, alpha)
            ours, theirs = table[op](*args), op(*args)
            torch.testing.assert_close(ours[0], theirs[0], rtol=1e-5, atol=1e-5)
            if training:  # the batch statistics, which the op also returns
                torch.testing.assert_close(ours[2:], theirs[2:], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- exported programs
GENERATORS = {
    "dcgan-label-cbn": lambda: image_models("label", 10, "cbn")[0],
    "dcgan-attributes-concat": lambda: image_models("attributes", 4, "concat")[0],
    "dcgan-none": lambda: image_models("none")[0],
    "mlp-user-cbn": lambda: vector_models("user", 7, "cbn", norm="batch")[0],
    "mlp-attributes-concat": lambda: vector_models("attributes", 3, "concat")[0],
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_exported_program_is_plain_aten_and_equals_the_fused_generator(name):
    generator = randomize(GENERATORS[name]()).eval()
    program = export_program(generator, "cpu")
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert not any(t.startswith("fastgan.") for t in targets), targets
    exported = program.module()
    for batch in (1, 5):  # neither is the tracing batch: the batch dimension is dynamic
        inputs = example_inputs(generator, batch, "cpu", seed=batch)
        with torch.no_grad():
            torch.testing.assert_close(exported(*inputs), generator(*inputs), rtol=1e-5, atol=1e-6)


def test_a_fastgan_op_without_decomposition_stops_the_export():
    class LossAsGenerator(nn.Module):  # calls an op that an inference graph never should
        latent_dim, cond_kind, cond_size = 4, "none", 0

        def forward(self, z):
            return FG.generator_loss(z, "hinge", reduction="none")

    with pytest.raises(ExportError, match="fastgan.generator_loss"):
        export_program(LossAsGenerator(), "cpu")


# ---------------------------------------------------------------------- the command
def test_export_writes_a_package_that_runs_the_chosen_generator(tmp_path, capsys):
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", *vector_models("attributes", 3, "concat"), cond_names=["a", "b", "c"])
    out = tmp_path / "packages" / "gen.pt2"  # its folder is made
    assert main(["export", "--ckpt", str(ckpt), "--out", str(out), "--device", "cpu", "--no-ema"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["gen.pt2"]  # no temporary file left
    package = torch._inductor.aoti_load_package(str(out))
    meta = package.get_metadata()
    assert {k: meta[k] for k in meta if k.startswith("fastgan.")} == {
        "fastgan.format": "fastgan-generator", "fastgan.version": "1", "fastgan.latent_dim": "4",
        "fastgan.cond_kind": "attributes", "fastgan.cond_size": "3", "fastgan.cond_names": "a\nb\nc",
        "fastgan.sample_shape": "5",
    }
    assert meta["AOTI_DEVICE_KEY"] == "cpu"
    trained, _ = load_generator(ckpt, ema=False)
    ema, _ = load_generator(ckpt)
    for batch in (1, 9):
        z, c = example_inputs(trained, batch, "cpu", seed=batch)
        with torch.no_grad():
            got, want, other = package(z, c), trained(z, c), ema(z, c)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        assert (got - other).abs().max() > 1e-3  # --no-ema chose the trained weights


def test_export_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = write_checkpoint(tmp_path / "ckpt.pt", *image_models("label", 10, "cbn"))
    one_line_error(["export", "--ckpt", "missing.pt", "--out", "g.pt2"], capsys, "argument --ckpt: checkpoint 'missing.pt' does not exist")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    one_line_error(["export", "--ckpt", "junk.pt", "--out", "g.pt2"], capsys, "argument --ckpt: 'junk.pt' is not a readable checkpoint")
    torch.save({"format": "something-else"}, tmp_path / "foreign.pt")
    one_line_error(["export", "--ckpt", "foreign.pt", "--out", "g.pt2"], capsys, "is not a fastgan checkpoint")

    state = torch.load(ckpt, weights_only=True)
    state["generator_ema"] = {k: v[:1] if v.dim() else v for k, v in state["generator_ema"].items()}
    torch.save(state, tmp_path / "misfit.pt")
    one_line_error(["export", "--ckpt", "misfit.pt", "--out", "g.pt2"], capsys, "its generator cannot be rebuilt")
    state["config"]["generator"]["model"] = "NoSuchGenerator"
    torch.save(state, tmp_path / "unknown.pt")
    one_line_error(["export", "--ckpt", "unknown.pt", "--out", "g.pt2"], capsys, "'model' is one of")

    one_line_error(["export", "--ckpt", "ckpt.pt", "--out", "g.so"], capsys, "argument --out: 'g.so' must be a .pt2 file")
    (tmp_path / "dir.pt2").mkdir()
    one_line_error(["export", "--ckpt", "ckpt.pt", "--out", "dir.pt2"], capsys, "argument --out: 'dir.pt2' is a directory")
    (tmp_path / "afile").write_text("")
    one_line_error(["export", "--ckpt", "ckpt.pt", "--out", "afile/g.pt2"], capsys, "argument --out: 'afile/g.pt2': cannot create its folder")
    one_line_error(["export", "--ckpt", "ckpt.pt", "--out", "g.pt2", "--device", "tpu"], capsys, "argument --device")
    if not torch.cuda.is_available():
        one_line_error(["export", "--ckpt", "ckpt.pt", "--out", "g.pt2", "--device", "cuda"], capsys,
                       "argument --device: 'cuda' but CUDA is not available")
    assert not (tmp_path / "g.pt2").exists()
