"""Reference solutions to the exercises of lesson 01 (rotation in 2-D).

The notebook's check cells run these when the student's stub is still empty, so CI keeps
them correct. Try the exercises before reading on.
"""

import math

import torch


def rotation_2d(angle):
    """The 2×2 matrix that turns a 2-D vector counter-clockwise by `angle` radians (float64)."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def rotate_complex(v, angle):
    """Rotate v: (2,) by `angle` radians: read (a, b) as a + ib, multiply by e^{i·angle},
    and read the product back as a real (2,) vector."""
    z = torch.complex(v[0], v[1])
    turned = z * complex(math.cos(angle), math.sin(angle))
    return torch.stack((turned.real, turned.imag))


def wavelength(theta):
    """Tokens after which a pair turning by `theta` radians per token has made a full turn."""
    return 2 * math.pi / theta
