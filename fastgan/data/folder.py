"""A folder of images (read with Pillow) and an optional CSV of per-image attributes."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
import torch

from .arrays import ArrayData

log = logging.getLogger("fastgan")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _load_image(path: Path, size: int, mode: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert(mode)
        # Centre crop to a square, then resize: the aspect ratio is kept.
        w, h = image.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
        image = image.resize((size, size), Image.Resampling.LANCZOS)
        array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def read_attributes(csv_path: Path, columns: list[str] | None = None) -> tuple[list[str], list[str], np.ndarray]:
    """(file names, attribute names, values [rows, attributes]) from a CSV whose first
    column names the image file and whose other columns hold numbers."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"attributes CSV {str(csv_path)!r} does not exist")
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or len(rows[0]) < 2:
        raise ValueError(f"attributes CSV {str(csv_path)!r} needs a header row: a file-name column, then at least one attribute column")
    header = [h.strip() for h in rows[0]]
    available = header[1:]
    if columns is None:
        columns = available
    else:
        unknown = [c for c in columns if c not in available]
        if unknown or not columns:
            raise ValueError(f"attributes CSV {str(csv_path)!r} has no column(s) {unknown}; its attribute columns are {available}")
    index = [header.index(c) for c in columns]
    files, values = [], []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"attributes CSV {str(csv_path)!r} line {line_no}: {len(row)} fields, the header has {len(header)}")
        record = []
        for i in index:
            try:
                value = float(row[i])
            except ValueError:
                raise ValueError(
                    f"attributes CSV {str(csv_path)!r} line {line_no}, column {header[i]!r}: {row[i]!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise ValueError(f"attributes CSV {str(csv_path)!r} line {line_no}, column {header[i]!r}: {row[i]!r} is not finite")
            record.append(value)
        files.append(row[0].strip())
        values.append(record)
    if not files:
        raise ValueError(f"attributes CSV {str(csv_path)!r} has no data rows")
    return files, list(columns), np.asarray(values, dtype=np.float32)


def image_folder(folder, size: int, *, channels: int = 3, attributes=None, columns: list[str] | None = None) -> ArrayData:
    """Every image under `folder` (searched recursively), centre-cropped and resized to
    size x size, as uint8 [N, channels, size, size].

    attributes: an optional CSV (first column the file name relative to `folder`, the
    others numbers) whose chosen `columns` (default: all) become each image's condition
    vector; only the images it names are used. Images Pillow cannot read are skipped
    and counted in the log.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist or is not a directory")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    mode = "L" if channels == 1 else "RGB"

    cond_values, names = None, None
    if attributes is not None:
        files, names, cond_values = read_attributes(Path(attributes), columns)
        paths = [folder / f for f in files]
        missing = [f for f, p in zip(files, paths) if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"attributes CSV {str(attributes)!r} names {len(missing)} file(s) missing from {str(folder)!r}, e.g. {missing[:3]}"
            )
    else:
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    images, kept, skipped = [], [], []
    for i, path in enumerate(paths):
        try:
            images.append(_load_image(path, size, mode))
            kept.append(i)
        except (OSError, ValueError, SyntaxError):  # what Pillow raises for unreadable or truncated files
            skipped.append(path)
    if skipped:
        log.warning("skipped %d unreadable image(s) in %s, e.g. %s", len(skipped), folder, skipped[0].name)
    if not images:
        raise ValueError(f"image folder {str(folder)!r} holds no readable images ({len(skipped)} unreadable)")
    log.info("read %d image(s) from %s", len(images), folder)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    if cond_values is None:
        return ArrayData(x, name=folder.name or str(folder))
    cond = torch.from_numpy(cond_values[kept])
    return ArrayData(x, cond, cond_kind="attributes", cond_size=len(names), cond_names=names, name=folder.name or str(folder))
