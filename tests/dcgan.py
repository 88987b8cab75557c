"""The pytorch/examples DCGAN-64 generator and discriminator (nz=100, ngf=ndf=64,
64x64x3), written out as plain torch.nn: the models fuse() and the kernels are held to."""

from torch import nn


def generator(nz=100, ngf=64, nc=3):
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
    )


def discriminator(ndf=64, nc=3):
    return nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
    )


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
