"""The pytorch/examples DCGAN-64 generator and discriminator (nz=100, ngf=ndf=64,
64x64x3), the models fuse() and the kernels are held to (one definition, shared with
fastgan.bench.cpu_path), and the shapes of their conv layers."""

from fastgan.bench.cpu_path import examples_discriminator, examples_generator


def generator(nz=100, ngf=64, nc=3):
    return examples_generator(nz, ngf, nc)


def discriminator(ndf=64, nc=3):
    return examples_discriminator(ndf, nc)


def layer_shapes(batch=2):
    """Every conv layer of DCGAN-64 as (name, transposed, x shape, weight shape, stride, padding)."""
    g = [(100, 512, 1, 1, 0), (512, 256, 4, 2, 1), (256, 128, 8, 2, 1), (128, 64, 16, 2, 1), (64, 3, 32, 2, 1)]
    d = [(3, 64, 64, 2, 1), (64, 128, 32, 2, 1), (128, 256, 16, 2, 1), (256, 512, 8, 2, 1), (512, 1, 4, 1, 0)]
    shapes = []
    for i, (cin, cout, hw, s, p) in enumerate(g):
        shapes.append((f"G{i}", True, (batch, cin, hw, hw), (cin, cout, 4, 4), s, p))
    for i, (cin, cout, hw, s, p) in enumerate(d):
        shapes.append((f"D{i}", False, (batch, cin, hw, hw), (cout, cin, 4, 4), s, p))
    return shapes
