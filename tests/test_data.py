"""fastgan.data: digits, the 2-D mixtures, image folders with attribute CSVs and their
errors, condition conversions."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from fastgan import data as fdata


def test_digits():
    d = fdata.digits()
    assert len(d) == 1797 and d.sample_shape == (1, 8, 8) and d.is_image
    assert d.x.min() == -1 and d.x.max() == 1
    assert d.cond_kind == "label" and d.cond_size == 10 and d.cond_names == [str(i) for i in range(10)]
    assert torch.equal(torch.unique(d.cond), torch.arange(10))
    x, c = d[torch.tensor([0, 5])]
    assert x.shape == (2, 1, 8, 8) and c.tolist() == [0, 5]  # the data set starts 0, 1, 2, ...


@pytest.mark.parametrize("name,modes,sigma", [("ring", 8, 0.01), ("grid", 25, 0.05)])
def test_mixtures(name, modes, sigma):
    d = fdata.mixture(name, n=5000, seed=3)
    centres = fdata.ring_modes() if name == "ring" else fdata.grid_modes()
    assert len(centres) == modes and d.cond_size == modes
    offsets = d.x - centres[d.cond]
    # Each point is a draw from N(its mode, sigma^2 I).
    assert abs(offsets.std().item() - sigma) < 0.05 * sigma
    assert offsets.abs().max() < 6 * sigma
    assert torch.equal(torch.unique(d.cond), torch.arange(modes))
    if name == "ring":
        assert torch.allclose(centres.norm(dim=1), torch.ones(8))
    else:
        assert set(centres.flatten().tolist()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert torch.equal(fdata.mixture(name, n=5000, seed=3).x, d.x)


def _write_images(folder, count, *, size=(20, 12), mode="RGB"):
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        value = 10 * i
        Image.new(mode, size, (value, 0, 255 - value) if mode == "RGB" else value).save(folder / f"img{i}.png")
        names.append(f"img{i}.png")
    return names


def test_image_folder_reads_resizes_and_skips_unreadable(tmp_path, caplog):
    names = _write_images(tmp_path / "imgs", 4)
    _write_images(tmp_path / "imgs" / "sub", 1, mode="L", size=(9, 30))
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "imgs" / "notes.txt").write_text("ignored: not an image")
    with caplog.at_level(logging.WARNING, logger="fastgan"):
        d = fdata.image_folder(tmp_path / "imgs", 16)
    assert "skipped 1 unreadable image(s)" in caplog.text
    assert d.x.shape == (5, 3, 16, 16) and d.x.dtype == torch.uint8 and d.cond is None
    x, c = d[torch.arange(5)]
    assert c is None and x.min() >= -1 and x.max() <= 1
    # img1.png is the colour (10, 0, 245): scaled to [-1, 1].
    expected = torch.tensor([10, 0, 245]) / 127.5 - 1
    assert torch.allclose(x[1].mean((1, 2)), expected, atol=0.02)
    gray = fdata.image_folder(tmp_path / "imgs", 8, channels=1)
    assert gray.x.shape == (5, 1, 8, 8)
    assert len(names) == 4


def test_image_folder_attributes_follow_the_csv(tmp_path):
    _write_images(tmp_path / "imgs", 3)
    csv = tmp_path / "attrs.csv"
    csv.write_text("file,smiling,age,glasses\nimg2.png,1,0.5,0\nimg0.png,0,0.25,1\n")
    d = fdata.image_folder(tmp_path / "imgs", 8, attributes=csv)
    assert d.cond_kind == "attributes" and d.cond_size == 3 and d.cond_names == ["smiling", "age", "glasses"]
    assert d.cond.tolist() == [[1, 0.5, 0], [0, 0.25, 1]]
    # Row order is the CSV's: the first sample is img2.png (red 20).
    assert abs(int(d.x[0, 0].float().mean()) - 20) <= 1 and int(d.x[1, 0].float().mean()) <= 1
    picked = fdata.image_folder(tmp_path / "imgs", 8, attributes=csv, columns=["glasses"])
    assert picked.cond.tolist() == [[0.0], [1.0]] and picked.cond_names == ["glasses"]
    # A single integer column can serve as class labels or user ids.
    users = picked.with_condition("user")
    assert users.cond_kind == "user" and users.cond.tolist() == [0, 1] and users.cond_size == 2


def test_image_folder_errors(tmp_path):
    _write_images(tmp_path / "imgs", 2)
    with pytest.raises(FileNotFoundError, match="image folder .*nope.* does not exist"):
        fdata.image_folder(tmp_path / "nope", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no readable images"):
        fdata.image_folder(tmp_path / "empty", 8)
    missing = tmp_path / "missing.csv"
    missing.write_text("file,a\nimg0.png,1\nimg9.png,0\n")
    with pytest.raises(FileNotFoundError, match=r"names 1 file\(s\) missing .*img9.png"):
        fdata.image_folder(tmp_path / "imgs", 8, attributes=missing)
    bad_value = tmp_path / "bad.csv"
    bad_value.write_text("file,a,b\nimg0.png,1,2\nimg1.png,yes,0\n")
    with pytest.raises(ValueError, match=r"line 3, column 'a': 'yes' is not a number"):
        fdata.image_folder(tmp_path / "imgs", 8, attributes=bad_value)
    with pytest.raises(ValueError, match=r"has no column\(s\) \['c'\]; its attribute columns are \['a', 'b'\]"):
        fdata.image_folder(tmp_path / "imgs", 8, attributes=bad_value, columns=["c"])
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("file,a\nimg0.png,1,5\n")
    with pytest.raises(ValueError, match="line 2: 3 fields, the header has 2"):
        fdata.image_folder(tmp_path / "imgs", 8, attributes=ragged)
    header_only = tmp_path / "header.csv"
    header_only.write_text("file\n")
    with pytest.raises(ValueError, match="needs a header row"):
        fdata.image_folder(tmp_path / "imgs", 8, attributes=header_only)
    with pytest.raises(FileNotFoundError, match="attributes CSV .* does not exist"):
        fdata.image_folder(tmp_path / "imgs", 8, attributes=tmp_path / "none.csv")
    with pytest.raises(ValueError, match="channels must be 1"):
        fdata.image_folder(tmp_path / "imgs", 8, channels=4)


def test_condition_conversions():
    d = fdata.ArrayData(torch.zeros(3, 2), torch.tensor([0, 2, 1]), cond_kind="label", cond_size=3)
    one_hot = d.with_condition("attributes")
    assert one_hot.cond.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]] and one_hot.cond_size == 3
    assert d.with_condition("none").cond is None
    assert d.with_condition("user").cond_kind == "user"
    assert d.with_condition("auto") is d
    attrs = fdata.ArrayData(torch.zeros(2, 2), torch.tensor([[0.5, 1.0], [1.0, 0.0]]), cond_kind="attributes", cond_size=2)
    with pytest.raises(ValueError, match="needs exactly one attribute column"):
        attrs.with_condition("label")
    with pytest.raises(ValueError, match="has no condition"):
        fdata.ArrayData(torch.zeros(2, 2)).with_condition("label")


def test_array_data_checks():
    with pytest.raises(ValueError, match=r"label values must lie in \[0, 3\)"):
        fdata.ArrayData(torch.zeros(2, 2), torch.tensor([0, 3]), cond_kind="label", cond_size=3)
    with pytest.raises(ValueError, match="2 conditions for 3 samples"):
        fdata.ArrayData(torch.zeros(3, 2), torch.tensor([0, 1]), cond_kind="label", cond_size=3)
    with pytest.raises(ValueError, match="give cond exactly when"):
        fdata.ArrayData(torch.zeros(3, 2), cond_kind="label", cond_size=3)
    with pytest.raises(TypeError, match="x must be float or uint8"):
        fdata.ArrayData(torch.zeros(3, 2, dtype=torch.int32))
    assert np.isclose(float(fdata.ArrayData(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8))[0][0].max()), 1.0)
