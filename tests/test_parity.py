"""Backend parity end to end (fastgan.train.parity): the same short run on the
reference and on the Triton kernels trains the same model. The full-length check is a
command (python -m fastgan.train.parity); here, a few steps of a tiny ring model."""

import torch

from fastgan.train.parity import compare, main, train_and_score

TINY_RUN = dict(data="ring", steps=4, width=16, latent=4, batch_size=32, seed=0, device="cpu")


def test_triton_training_follows_the_reference_step_by_step():
    reference = train_and_score(TINY_RUN, "reference", eval_seeds=(0,))
    triton = train_and_score(TINY_RUN, "triton", eval_seeds=(0,))
    result = compare(reference, triton, [], loss_rtol=1e-4)
    assert result["ok"], result["checks"]
    # Every step's losses, not only the first: float32 kernels vs float32 PyTorch.
    for name in ("d_loss", "g_loss"):
        assert torch.allclose(torch.tensor(triton[name]), torch.tensor(reference[name]), rtol=1e-3, atol=1e-5)
    assert result["max_sample_difference"] < 1e-3


def test_the_same_run_twice_is_identical_and_another_seed_is_caught():
    first = train_and_score(TINY_RUN, "reference", eval_seeds=(0,))
    again = dict(train_and_score(TINY_RUN, "reference", eval_seeds=(0,)), backend="again")
    other = dict(train_and_score(dict(TINY_RUN, seed=1), "reference", eval_seeds=(0,)), backend="other")
    same = compare(first, again, [other])
    assert same["ok"] and same["max_sample_difference"] == 0 and same["first_step_d_loss_apart_1pct"] is None
    assert len(first["d_loss"]) == TINY_RUN["steps"]
    different = compare(first, other, [])
    assert not different["ok"]
    assert not next(c for c in different["checks"] if c["check"] == "d_loss at step 1")["ok"]


def run(backend, loss, **scores):
    return {"backend": backend, "d_loss": [loss], "g_loss": [loss], "scores": scores, "samples": torch.zeros(2, 2)}


def test_scores_pass_within_three_standard_deviations_of_training_noise():
    reference = run("reference", 1.0, modes=8.0, high_quality=0.95, reverse_kl=0.01)
    noise = [run("reference", 1.1, modes=8.0, high_quality=0.94, reverse_kl=0.02),
             run("reference", 1.2, modes=8.0, high_quality=0.96, reverse_kl=0.01)]
    # std of (.95, .94, .96) is .01: tolerance .03
    assert compare(reference, run("triton", 1.0005, modes=8.0, high_quality=0.925, reverse_kl=0.02), noise)["ok"]
    verdict = compare(reference, run("triton", 1.0005, modes=8.0, high_quality=0.915, reverse_kl=0.02), noise)
    assert [c["check"] for c in verdict["checks"] if not c["ok"]] == ["high_quality"]
    # No spread among the reference runs (8 of 8 modes each time): any difference fails.
    verdict = compare(reference, run("triton", 1.0, modes=7.0, high_quality=0.95, reverse_kl=0.01), noise)
    assert [c["check"] for c in verdict["checks"] if not c["ok"]] == ["modes"]
    verdict = compare(reference, run("triton", 1.01, modes=8.0, high_quality=0.95, reverse_kl=0.01), noise)
    assert [c["check"] for c in verdict["checks"] if not c["ok"]] == ["d_loss at step 1", "g_loss at step 1"]
    verdict = compare(reference, run("triton", 1.0, modes=8.0, high_quality=0.95, reverse_kl=float("inf")), noise)
    assert [c["check"] for c in verdict["checks"] if not c["ok"]] == ["reverse_kl"]


def test_command_errors_are_one_line(capsys):
    assert main(["--loss", "bce"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --loss: invalid choice: 'bce'" in err[0]
    assert main(["--noise-seeds", "-1"]) == 2
    assert "argument --noise-seeds: must be an integer >= 0" in capsys.readouterr().err
    assert main(["--out", "somewhere", "--steps", "1"]) == 2
    assert "argument --out: parity runs train in memory" in capsys.readouterr().err
