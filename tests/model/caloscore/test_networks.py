"""The CaloScore v2 networks: published parameter count, shapes per dataset, wiring, initialisation, and the
U-Net's fast formulation against the plain Conv1d formulas (outputs, gradients, training losses)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from calo_ablate.model.caloscore.config import CaloScoreConfig
from calo_ablate.model.caloscore.embeddings import TimeEmbedding
from calo_ablate.model.caloscore.network import CaloScoreNetwork
from calo_ablate.model.caloscore.unet1d import ResidualBlock1d, SelfAttention1d, UNet1d
from calo_ablate.model.interface import count_trainable

PUBLISHED_PHOTON_PARAMS = 2_447_366  # CaloChallenge results table, CaloScore v2 on dataset 1 photons


def _inputs(batch: int, n_voxels: int, n_layers: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, n_voxels, generator=g), torch.rand(batch, generator=g),
            torch.randn(batch, n_layers, generator=g), torch.rand(batch, 1, generator=g))


def _randomise_output(net: CaloScoreNetwork) -> None:
    """Give the zero-initialised output conv random weights so that every path reaches the output."""
    with torch.no_grad():
        net.voxel_net.unet.output.weight.normal_(0.0, 0.1)
        net.voxel_net.unet.output.bias.normal_(0.0, 0.1)


@pytest.fixture(scope="module")
def photon_net() -> CaloScoreNetwork:
    torch.manual_seed(0)
    return CaloScoreNetwork(CaloScoreConfig(), n_voxels=368, n_layers=5)


def test_parameter_count_matches_published(photon_net: CaloScoreNetwork) -> None:
    parts = photon_net.parameter_breakdown()
    assert abs(parts["total"] - PUBLISHED_PHOTON_PARAMS) / PUBLISHED_PHOTON_PARAMS < 0.01
    # the published figure counts the shared energy embedding once in each of the two Keras models
    assert parts["total"] + parts["energy_embedding"] == PUBLISHED_PHOTON_PARAMS


def test_breakdown_sums_to_total(photon_net: CaloScoreNetwork) -> None:
    parts = photon_net.parameter_breakdown()
    total = parts.pop("total")
    assert sum(parts.values()) == total == count_trainable(photon_net)


def test_layer_net_count_by_hand(photon_net: CaloScoreNetwork) -> None:
    def dense(n_in: int, n_out: int) -> int:
        return n_in * n_out + n_out

    time_emb = dense(64, 128) + dense(128, 64)
    conditioning = dense(128, 64)
    block = dense(128, 128) + dense(128, 256) + 2 * dense(128, 128)
    resnet = dense(64, 128) + dense(5, 128) + 2 * block + dense(128, 5)
    assert photon_net.parameter_breakdown()["layer_net"] == time_emb + conditioning + resnet


def test_optimiser_groups_partition_parameters(photon_net: CaloScoreNetwork) -> None:
    layer = {id(p) for p in photon_net.layer_parameters()}
    voxel = {id(p) for p in photon_net.voxel_parameters()}
    assert not layer & voxel
    assert layer | voxel == {id(p) for p in photon_net.parameters()}


def test_removing_sampling_layers_shrinks_the_model(photon_net: CaloScoreNetwork) -> None:
    config = CaloScoreConfig.model_validate({"voxel": {"widths": [128], "attention": [True]}})
    flat = CaloScoreNetwork(config, n_voxels=368, n_layers=5)
    assert flat.voxel_net.unet.pad_multiple == 1
    _randomise_output(flat)
    assert flat.voxel_velocity(*_inputs(2, 368, 5)).shape == (2, 368)
    assert count_trainable(flat) < count_trainable(photon_net) / 2


@pytest.mark.parametrize(("n_voxels", "n_layers", "overrides"), [
    (368, 5, {}),
    (533, 7, {}),  # pions: padded to 536 inside the U-Net
    (6480, 45, {"voxel": {"attention": [False, False, False, False]}}),  # dataset 2
])
def test_output_shapes(n_voxels: int, n_layers: int, overrides: dict) -> None:
    net = CaloScoreNetwork(CaloScoreConfig.model_validate(overrides), n_voxels, n_layers)
    _randomise_output(net)
    voxel, t, layer, cond = _inputs(2, n_voxels, n_layers)
    out = net.voxel_velocity(voxel, t, layer, cond)
    assert out.shape == (2, n_voxels)
    assert torch.isfinite(out).all()
    assert net.layer_velocity(layer, t, cond).shape == (2, n_layers)


def test_zero_initialised_output(photon_net: CaloScoreNetwork) -> None:
    out = photon_net.voxel_velocity(*_inputs(3, 368, 5))
    assert torch.equal(out, torch.zeros_like(out))


def test_every_parameter_reaches_the_output() -> None:
    torch.manual_seed(1)
    net = CaloScoreNetwork(CaloScoreConfig(), n_voxels=368, n_layers=5)
    _randomise_output(net)
    voxel, t, layer, cond = _inputs(2, 368, 5)
    loss = net.voxel_velocity(voxel, t, layer, cond).square().mean()
    loss = loss + net.layer_velocity(layer, t, cond).square().mean()
    loss.backward()
    dead = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


def test_samples_do_not_mix_across_the_batch() -> None:
    torch.manual_seed(2)
    net = CaloScoreNetwork(CaloScoreConfig(), n_voxels=533, n_layers=7).eval()
    _randomise_output(net)
    voxel, t, layer, cond = _inputs(4, 533, 7)
    full = net.voxel_velocity(voxel, t, layer, cond)
    part = net.voxel_velocity(voxel[:2], t[:2], layer[:2], cond[:2])
    torch.testing.assert_close(part, full[:2], rtol=1e-4, atol=1e-5)


def test_net_depends_on_time_layers_and_energy() -> None:
    torch.manual_seed(3)
    net = CaloScoreNetwork(CaloScoreConfig(), n_voxels=368, n_layers=5).eval()
    _randomise_output(net)
    voxel, t, layer, cond = _inputs(2, 368, 5)
    base = net.voxel_velocity(voxel, t, layer, cond)
    for changed in (net.voxel_velocity(voxel, t + 0.1, layer, cond),
                    net.voxel_velocity(voxel, t, layer + 1.0, cond),
                    net.voxel_velocity(voxel, t, layer, cond + 0.1)):
        assert not torch.allclose(changed, base)
    layer_out = net.layer_velocity(layer, t, cond)
    assert not torch.allclose(net.layer_velocity(layer, t, cond + 0.1), layer_out)


def test_time_embedding_frequencies() -> None:
    emb = TimeEmbedding(num_frequencies=32, embed_dim=64)
    assert emb.frequencies[0].item() == pytest.approx(1.0)
    assert emb.frequencies[-1].item() == pytest.approx(1e-4)
    assert "frequencies" not in emb.state_dict()
    assert emb(torch.tensor([0.0, 0.5])).shape == (2, 64)


# ---- the U-Net's channels-last conv2d formulation against the plain Conv1d formulas -------------------

def _conv1d(conv: torch.nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    return F.conv1d(x, conv.weight, conv.bias, padding=conv.padding)


def _reference_unet(unet: UNet1d, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The U-Net in (B, C, N) layout with F.conv1d, avg_pool1d and 1-D nearest upsampling, reading the
    module's parameters by name: the formulation before the channels-last rewrite."""
    def attention(a: SelfAttention1d, h: torch.Tensor) -> torch.Tensor:
        n = F.layer_norm(h.transpose(1, 2), (h.shape[1],))
        q, k, v = F.linear(n, a.qkv.weight, a.qkv.bias).chunk(3, dim=-1)
        weights = torch.softmax(q @ k.transpose(1, 2) / h.shape[1] ** 0.5, dim=-1)
        return h + F.linear(weights @ v, a.out.weight, a.out.bias).transpose(1, 2)

    def block(b: ResidualBlock1d, h: torch.Tensor) -> torch.Tensor:
        inner = _conv1d(b.conv1, F.silu(h)) + F.linear(cond, b.cond.weight, b.cond.bias).unsqueeze(-1)
        inner = _conv1d(b.conv2, F.silu(inner))
        residual = h if isinstance(b.residual, torch.nn.Identity) else _conv1d(b.residual, h)
        out = residual + inner
        return attention(b.attention, out) if isinstance(b.attention, SelfAttention1d) else out

    n_voxels = x.shape[1]
    h = _conv1d(unet.lift, F.pad(x, (0, -n_voxels % unet.pad_multiple)).unsqueeze(1))
    skips = []
    for stage in unet.down:
        for b in stage:
            h = block(b, h)
            skips.append(h)
        h = F.avg_pool1d(h, 2)
    for b in unet.bottleneck:
        h = block(b, h)
    for stage in unet.up:
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        for b in stage:
            h = block(b, torch.cat([h, skips.pop()], dim=1))
    return _conv1d(unet.output, h).squeeze(1)[:, :n_voxels]


@pytest.mark.parametrize(("widths", "attention", "kernel_size", "n_voxels"), [
    ([8, 16, 24], [False, True, True], 3, 37),  # padded to 40 inside, cropped back
    ([8, 16], [True, False], 4, 20),            # even kernel: asymmetric "same" padding
    ([16], [True], 5, 23),                      # no sampling layers
])
def test_unet_matches_conv1d_formulas(widths: list[int], attention: list[bool], kernel_size: int,
                                      n_voxels: int) -> None:
    torch.manual_seed(4)
    unet = UNet1d(4, widths, attention, block_depth=2, kernel_size=kernel_size, cond_dim=6)
    with torch.no_grad():
        unet.output.weight.normal_(0.0, 0.3)
    x = torch.randn(3, n_voxels, requires_grad=True)
    cond = torch.randn(3, 6)
    out, expected = unet(x, cond), _reference_unet(unet, x, cond)
    assert out.shape == (3, n_voxels)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), [x, *unet.parameters()])
    expected_grads = torch.autograd.grad(expected.square().sum(), [x, *unet.parameters()])
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_training_losses_match_conv1d_formulas(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same seed, same steps: the losses of 15 Adamax steps agree within 1e-3 relative."""
    config = CaloScoreConfig.model_validate({"voxel": {"lift_channels": 4, "widths": [8, 16], "attention": [False, True],
                                                   "block_depth": 1}, "layer": {"mlp_dim": 16, "dropout": 0.0}})

    def train() -> list[float]:
        torch.manual_seed(5)
        net = CaloScoreNetwork(config, n_voxels=40, n_layers=3)
        optimizer = torch.optim.Adamax(net.parameters(), lr=1e-3)
        losses = []
        for step in range(15):
            voxel, t, layer, cond = _inputs(16, 40, 3, seed=step)
            loss = net.voxel_velocity(voxel, t, layer, cond).sub(layer.mean(1, keepdim=True)).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    new = train()
    monkeypatch.setattr(UNet1d, "forward", _reference_unet)
    old = train()
    assert new[-1] != new[0]
    torch.testing.assert_close(torch.tensor(new), torch.tensor(old), rtol=1e-3, atol=0.0)
