"""Data sets for fastgan: in-memory samples with their conditions.

    digits()                     scikit-learn's 8x8 digits, labels as the condition
    ring(), grid()               2-D mixtures of 8 and 25 Gaussians (mode index as label)
    image_folder(path, size)     a folder of images, optional CSV of per-image attributes
    ArrayData(x, cond, ...)      your own tensors
"""

from .arrays import ArrayData
from .digits import digits
from .folder import image_folder, read_attributes
from .toys import TOYS, grid, grid_modes, mixture, ring, ring_modes

__all__ = ["ArrayData", "TOYS", "digits", "grid", "grid_modes", "image_folder", "mixture", "read_attributes", "ring", "ring_modes"]
