"""CaloFlow's flows: published parameter counts, exact invertibility, orders within layers, dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zuko.transforms import MonotonicRQSTransform

from calo_ablate.geometry import load_geometry
from calo_ablate.model.caloflow.config import CaloFlowConfig
from calo_ablate.model.caloflow.flows import FastKnotsRQS, build_flow, flow1_orders, flow2_orders
from calo_ablate.model.caloflow.module import CaloFlowModule
from calo_ablate.model.caloflow.preprocess import layer_slices

from .conftest import tiny_config

PUBLISHED_PARAMETERS = {"1-photons": 28_043_810, "1-pions": 57_079_326}  # CaloChallenge final results


@pytest.mark.parametrize("dataset", ["1-photons", "1-pions"])
def test_parameter_count_within_one_percent_of_the_published(dataset: str) -> None:
    module = CaloFlowModule(CaloFlowConfig(), dataset)
    n = sum(p.numel() for p in module.parameters() if p.requires_grad)
    assert abs(n - PUBLISHED_PARAMETERS[dataset]) / PUBLISHED_PARAMETERS[dataset] < 0.01


def _flow2(transform: str = "spline") -> tuple[nn.Module, int, int]:
    slices = (slice(0, 3), slice(3, 7), slice(7, 9))
    config = tiny_config(transform=transform, dtype="float64").resolved("1-photons")
    orders = flow2_orders(slices, 3, torch.Generator().manual_seed(0), within_layer=True)
    return build_flow(9, 2, config.flow2, config, orders).double().eval(), 9, 2


@pytest.mark.parametrize("transform", ["spline", "affine"])
def test_flow_is_exactly_invertible_and_its_sample_density_is_its_log_prob(transform: str) -> None:
    torch.manual_seed(0)
    flow, d, c = _flow2(transform)
    context = torch.randn(64, c, dtype=torch.float64)
    dist = flow(context)
    x = 6.0 * torch.randn(64, d, dtype=torch.float64)  # inside and outside the spline's bound
    assert torch.allclose(dist.transform.inv(dist.transform(x)), x, atol=1e-9)
    sample, log_prob = dist.rsample_and_log_prob()
    assert torch.allclose(dist.log_prob(sample), log_prob, atol=1e-8)
    assert torch.allclose(dist.transform(sample), dist.transform(dist.transform.inv(dist.transform(sample))),
                          atol=1e-9)


def test_flow2_orders_never_mix_layers_and_change_inside_them() -> None:
    slices = layer_slices(load_geometry("1-pions"))
    orders = flow2_orders(slices, 8, torch.Generator().manual_seed(1), within_layer=True)
    for order in orders:
        for s in slices:  # every layer's voxels take exactly the ranks of its own slice
            assert sorted(order[s].tolist()) == list(range(s.start, s.stop))
    assert torch.equal(orders[0], torch.arange(slices[-1].stop))
    first = slices[1]
    assert torch.equal(orders[1][first], torch.flip(torch.arange(first.start, first.stop), [0]))
    assert len({tuple(o.tolist()) for o in orders}) == 8


def test_flow1_orders_are_random_permutations() -> None:
    orders = flow1_orders(5, 6, torch.Generator().manual_seed(0))
    assert all(sorted(o.tolist()) == list(range(5)) for o in orders)
    assert len({tuple(o.tolist()) for o in orders}) > 1


def test_dropout_follows_every_hidden_layer_but_the_first() -> None:
    module = CaloFlowModule(tiny_config(), "1-photons")  # flow-II dropout 0.05, flow-I none, as published
    for block in module.flow2.transform.transforms:
        kinds = [type(m).__name__ for m in block.hyper]
        assert kinds.count("Dropout") == 1 and kinds.index("Dropout") == kinds.index("ReLU", 2) + 1
    assert not any(isinstance(m, nn.Dropout) for m in module.flow1.modules())


def test_fast_knots_equal_zukos_spline() -> None:
    g = torch.Generator().manual_seed(0)
    params = [20 * torch.randn(50, 7, n, generator=g, dtype=torch.float64) for n in (8, 8, 7)]
    ours, zukos = FastKnotsRQS(*params, bound=14.0, slope=1e-6), MonotonicRQSTransform(*params, bound=14.0, slope=1e-6)
    for name in ("horizontal", "vertical", "derivatives"):
        assert torch.allclose(getattr(ours, name), getattr(zukos, name), rtol=1e-12, atol=1e-12)
    x = 10 * torch.randn(50, 7, generator=g, dtype=torch.float64)
    assert torch.allclose(ours(x), zukos(x)) and torch.allclose(ours.inv(x), zukos.inv(x))
