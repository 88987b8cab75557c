"""The installed package: fastgan and fastgan.kernels import, a top-level `kernels`
does not (that name belongs to another PyPI project), every package folder is listed."""

import pathlib
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _python(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_fastgan_kernels_imports_and_kernels_does_not(tmp_path):
    # Run outside the repository, so only what is installed can be imported.
    ok = _python("import fastgan, fastgan.kernels; print(fastgan.kernels.__name__)", tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "fastgan.kernels"
    bad = _python("import kernels", tmp_path)
    assert bad.returncode != 0 and "ModuleNotFoundError" in bad.stderr


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"fastgan.kernels"} | {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "fastgan").rglob("__init__.py")
    }
    assert found == listed
