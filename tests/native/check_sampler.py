"""End-to-end test of the native sampler, run by ctest (CMakeLists.txt):

    check_sampler.py export  --sampler BUILD/fastgan-sample --work DIR   # the fixture
    check_sampler.py compare --sampler ... --work DIR
    check_sampler.py errors  --sampler ... --work DIR

`export` writes two small checkpoints with the real Trainer (an image generator with
labels and conditional batch norm; a vector generator with named attributes) and
exports each with `fastgan export`. `compare` samples them with fastgan-sample and with
Python for the same seed and condition: the noise is torch.randn(n, latent_dim) from a
CPU torch.Generator seeded with the seed, in both programs (what `fastgan sample`
does), and the samples must agree within TOLERANCE; the PNG grid must match `fastgan
sample`'s pixel for pixel (one level of rounding allowed). `errors` checks the one-line
errors and exit status 2 for bad input. Exit status 0 when every check holds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the checkpoint helpers
from checkpoints import image_models, vector_models, write_checkpoint  # noqa: E402

from fastgan.train import load_generator  # noqa: E402

# Max |C++ - Python| per value (both float32 on the CPU; the package runs Inductor's
# code, Python the fused model's ops).
TOLERANCE = 1e-4
DIGITS = [str(i) for i in range(10)]
ATTRIBUTES = ["smiling", "young", "glasses"]
MODELS = {  # name: (models, condition names)
    "digits": (image_models("label", 10, "cbn"), DIGITS),
    "profiles": (vector_models("attributes", 3, "concat"), ATTRIBUTES),
}


def run(cmd, timeout=600):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)


def fastgan(*args):
    return run([sys.executable, "-m", "fastgan", *args])


def sampler(exe, work, *args):
    return run([exe, *args], timeout=120)


def check(ok, message):
    if not ok:
        raise AssertionError(message)


# ---------------------------------------------------------------------- export
def export(exe, work: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name, ((generator, discriminator), names) in MODELS.items():
        write_checkpoint(work / f"{name}.pt", generator, discriminator, cond_names=names)
        result = fastgan("export", "--ckpt", work / f"{name}.pt", "--out", work / f"{name}.pt2", "--device", "cpu")
        check(result.returncode == 0, f"fastgan export {name} failed:\n{result.stderr}")
        print(result.stdout.strip())


# ---------------------------------------------------------------------- compare
def python_samples(work, name, n, seed, c):
    """What `fastgan sample` computes: the checkpoint's (EMA) generator, fused ops."""
    generator, _ = load_generator(work / f"{name}.pt")
    z = torch.randn(n, generator.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator(z, c).numpy()


_OUTPUTS = itertools.count()


def native_samples(exe, work, name, n, seed, cond):
    out = work / f"{name}-n{n}-seed{seed}-{next(_OUTPUTS)}.npy"
    result = sampler(exe, work, "--package", work / f"{name}.pt2", "--n", n, "--seed", seed, "--cond", cond, "--out", out)
    check(result.returncode == 0, f"fastgan-sample failed for {name} --cond {cond}:\n{result.stderr}")
    return np.load(out)


def compare(exe, work: Path) -> None:
    cases = [  # model, --cond, the condition tensor for one sample, n, seed
        ("digits", "7", torch.tensor([7]), 16, 0),
        ("digits", "3", torch.tensor([3]), 1, 0),   # batch 1: the package's batch is dynamic
        ("digits", "3", torch.tensor([3]), 37, 5),
        ("profiles", "young=1,glasses=0.5", torch.tensor([[0.0, 1.0, 0.5]]), 8, 2),
        ("profiles", "1, 0, 1", torch.tensor([[1.0, 0.0, 1.0]]), 5, 0),
    ]
    results = {}
    for name, cond, c, n, seed in cases:
        ours = native_samples(exe, work, name, n, seed, cond)
        theirs = python_samples(work, name, n, seed, c.expand(n, *c.shape[1:]))
        check(ours.shape == theirs.shape and ours.dtype == np.float32, f"shape {ours.shape} {ours.dtype} != {theirs.shape}")
        diff = float(np.abs(ours - theirs).max())
        print(f"{name:9s} --cond {cond!r:22s} n={n:2d} seed={seed}: max |C++ - Python| = {diff:.3g}")
        check(diff <= TOLERANCE, f"{name} --cond {cond}: C++ and Python differ by {diff:.3g} > {TOLERANCE}")
        results[name, cond, seed] = ours

    # The comparison means something only if the samples depend on z and the condition.
    seed_effect = np.abs(results["digits", "3", 5][:1] - native_samples(exe, work, "digits", 1, 0, "3")).max()
    cond_effect = np.abs(results["digits", "7", 0][:1] - results["digits", "3", 0]).max()
    print(f"effect of the seed {seed_effect:.3g}, of the label {cond_effect:.3g} (must exceed {100 * TOLERANCE:g})")
    check(seed_effect > 100 * TOLERANCE and cond_effect > 100 * TOLERANCE, "samples do not depend on z or c")

    # The PNG grid: the layout and pixels of `fastgan sample`'s.
    for n in (5, 16):
        native_png, python_png = work / f"native-{n}.png", work / f"python-{n}.png"
        result = sampler(exe, work, "--package", work / "digits.pt2", "--cond", "7", "--n", n, "--seed", 4, "--out", native_png)
        check(result.returncode == 0, result.stderr)
        result = fastgan("sample", "--ckpt", work / "digits.pt", "--cond", "7", "--n", n, "--seed", 4, "--out", python_png)
        check(result.returncode == 0, result.stderr)
        ours, theirs = Image.open(native_png), Image.open(python_png)
        check(ours.mode == theirs.mode == "L" and ours.size == theirs.size, f"{ours.mode} {ours.size} vs {theirs.mode} {theirs.size}")
        levels = int(np.abs(np.asarray(ours, np.int16) - np.asarray(theirs, np.int16)).max())
        print(f"PNG grid of {n}: {ours.size[0]}x{ours.size[1]}, max pixel difference {levels}")
        check(levels <= 1, f"PNG grids differ by {levels} levels")


# ---------------------------------------------------------------------- errors
def doctored(work: Path, name: str, **changes) -> Path:
    """A copy of the digits package with its metadata changed (None removes a key)."""
    out = work / f"{name}.pt2"
    with zipfile.ZipFile(work / "digits.pt2") as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("_metadata.json"):
                meta = json.loads(data)
                for key, value in changes.items():
                    key = key.replace("__", ".")
                    if value is None:
                        meta.pop(key, None)
                    else:
                        meta[key] = value
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    return out


def errors(exe, work: Path) -> None:
    pkg, npy = work / "digits.pt2", work / "bad.npy"
    not_zip = work / "not-a-package.pt2"
    not_zip.write_text("hello")
    cases = [  # arguments, what the one-line message must contain
        (["--out", npy], "required: --package"),
        (["--package", pkg], "required: --out"),
        (["--package", work / "missing.pt2", "--out", npy], "'" + str(work / "missing.pt2") + "' does not exist"),
        (["--package", work, "--out", npy], "is not a file"),
        (["--package", not_zip, "--out", npy], "is not an AOTInductor package"),
        (["--package", doctored(work, "foreign", fastgan__format=None), "--out", npy, "--cond", "1"],
         "not a fastgan generator"),
        (["--package", doctored(work, "future", fastgan__version="2"), "--out", npy, "--cond", "1"],
         "version '2'; this fastgan-sample reads version 1"),
        (["--package", doctored(work, "gpu", AOTI_DEVICE_KEY="cuda"), "--out", npy, "--cond", "1"],
         "compiled for cuda, but this machine (or this libtorch) has no CUDA device"),
        (["--package", pkg, "--out", npy], "argument --cond: this model is conditioned on a label (10 classes)"),
        (["--package", pkg, "--out", npy, "--cond", "10"], "argument --cond: '10' is out of range"),
        (["--package", pkg, "--out", npy, "--cond", "seven"], "argument --cond: 'seven' is not a label id"),
        (["--package", pkg, "--out", npy, "--cond", "1", "--n", "0"], "argument --n: must be a positive integer"),
        (["--package", pkg, "--out", npy, "--cond", "1", "--seed", "-1"], "argument --seed"),
        (["--package", pkg, "--out", work / "grid.jpg", "--cond", "1"], "argument --out: must be a .png or .npy"),
        (["--package", pkg, "--out", work / "no" / "such" / "a.npy", "--cond", "1"], "argument --out: the folder"),
        (["--package", pkg, "--out", npy, "--cond", "1", "--device", "cuda"], "compiled for cpu"),
        (["--package", pkg, "--out", npy, "--cond", "1", "--device", "tpu"], "argument --device"),
        (["--package", pkg, "--out", npy, "--cond"], "argument --cond: expected one value"),
        (["--package", pkg, "--out", npy, "--colour", "red"], "unrecognized argument: --colour"),
        (["--package", work / "profiles.pt2", "--out", work / "p.png", "--cond", "young=1"], "makes vectors, not images"),
        (["--package", work / "profiles.pt2", "--out", npy, "--cond", "tall=1"], "unknown attribute 'tall'"),
        (["--package", work / "profiles.pt2", "--out", npy, "--cond", "1,0"], "has 2 value(s); the model takes 3"),
        (["--package", work / "profiles.pt2", "--out", npy, "--cond", "young=yes"], "'yes' is not a number"),
    ]
    for args, expected in cases:
        result = sampler(exe, work, *args)
        lines = result.stderr.strip().splitlines()
        check(result.returncode == 2, f"{args}: exit status {result.returncode}, expected 2\n{result.stderr}")
        check(len(lines) == 1 and lines[0].startswith("fastgan-sample: error: ") and expected in lines[0],
              f"{args}: expected one line with {expected!r}, got:\n{result.stderr}")
        check(not npy.exists(), f"{args}: wrote {npy} despite the error")
    print(f"{len(cases)} bad inputs rejected with one-line errors")
    help_text = sampler(exe, work, "--help")
    check(help_text.returncode == 0 and "--package" in help_text.stdout, "--help")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("export", "compare", "errors"))
    parser.add_argument("--sampler", required=True, type=Path, help="the fastgan-sample executable")
    parser.add_argument("--work", required=True, type=Path, help="a folder for checkpoints, packages and samples")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        {"export": export, "compare": compare, "errors": errors}[args.step](args.sampler, args.work)
    except AssertionError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
