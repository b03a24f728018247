"""Cylindrical convolutions: alpha wraps around, so a shift in alpha commutes with the conv."""

from __future__ import annotations

import pytest
import torch

from calo_ablate.model.calodiffusion.cylindrical import CylindricalConv, CylindricalConvTranspose


def _roll_alpha(x: torch.Tensor, shift: int) -> torch.Tensor:
    return torch.roll(x, shift, dims=3)


def _input(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(("kernel", "stride", "padding", "in_shift", "out_shift"), [
    (3, 1, 1, 1, 1),              # the Blocks' 3x3x3 conv
    ((3, 4, 4), 2, 1, 2, 1),      # Downsample: two input bins are one output bin
])
def test_conv_commutes_with_alpha_shift(kernel, stride, padding, in_shift, out_shift) -> None:
    torch.manual_seed(0)
    conv = CylindricalConv(3, 4, kernel, stride, padding)
    x = _input((2, 3, 5, 10, 7))
    torch.testing.assert_close(conv(_roll_alpha(x, in_shift)), _roll_alpha(conv(x), out_shift))


def test_transposed_conv_commutes_with_alpha_shift() -> None:
    torch.manual_seed(0)
    conv = CylindricalConvTranspose(3, 4, (3, 4, 4), 2, output_padding=(0, 0, 1))
    x = _input((2, 3, 3, 5, 7))
    out = conv(x)
    assert out.shape == (2, 4, 5, 10, 15)
    torch.testing.assert_close(conv(_roll_alpha(x, 1)), _roll_alpha(out, 2))


def test_plain_conv_switch_keeps_sizes_and_parameters_but_breaks_the_symmetry() -> None:
    torch.manual_seed(0)
    cylindrical = CylindricalConv(3, 4, 3, padding=1)
    plain = CylindricalConv(3, 4, 3, padding=1, cylindrical=False)
    plain.load_state_dict(cylindrical.state_dict())
    x = _input((2, 3, 5, 10, 7))
    assert plain(x).shape == cylindrical(x).shape == x.shape[:1] + (4,) + x.shape[2:]
    assert not torch.allclose(plain(_roll_alpha(x, 1)), _roll_alpha(plain(x), 1))
    # away from the alpha edges the two agree: only the padding differs
    torch.testing.assert_close(plain(x)[:, :, :, 1:-1], cylindrical(x)[:, :, :, 1:-1])
    up_cyl = CylindricalConvTranspose(3, 4, (4, 4, 4), 2)
    up_plain = CylindricalConvTranspose(3, 4, (4, 4, 4), 2, cylindrical=False)
    assert up_plain(x).shape == up_cyl(x).shape == (2, 4, 10, 20, 14)
