"""LeNet's Conv2d: torch's native kernel on one thread for small batches, the same values and
gradients as ``nn.Conv2d``, and ``nn.Conv2d``'s own path everywhere else."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from models import lenet


@pytest.fixture
def threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _pair(**kwargs: object) -> tuple[lenet.Conv2d, nn.Conv2d]:
    torch.manual_seed(0)
    ours = lenet.Conv2d(6, 16, kernel_size=5, **kwargs)  # type: ignore[arg-type]
    plain = copy.deepcopy(ours)
    plain.__class__ = nn.Conv2d
    return ours, plain


def _backward_name(conv: nn.Module, x: torch.Tensor) -> str:
    return type(conv(x.clone().requires_grad_(True)).grad_fn).__name__


@pytest.mark.parametrize("batch", [1, 5, lenet.NATIVE_MAX_BATCH])
def test_one_thread_small_batches_take_the_native_kernel_with_the_same_values(threads: None, batch: int) -> None:
    torch.set_num_threads(1)
    ours, plain = _pair(padding=2)
    x = torch.rand(batch, 6, 14, 14, generator=torch.Generator().manual_seed(1))
    assert _backward_name(ours, x) == "SlowConv2DBackward0"
    assert _backward_name(plain, x) != "SlowConv2DBackward0"
    torch.testing.assert_close(ours(x), plain(x), rtol=1e-5, atol=1e-5)

    xo, xp = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours(xo).square().sum().backward()
    plain(xp).square().sum().backward()
    torch.testing.assert_close(xo.grad, xp.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(ours.bias.grad, plain.bias.grad, rtol=1e-4, atol=1e-3)


def test_second_order_gradients_agree(threads: None) -> None:
    torch.set_num_threads(1)
    ours, plain = _pair()
    x = torch.rand(2, 6, 14, 14, generator=torch.Generator().manual_seed(2))
    grads = []
    for conv in (ours, plain):
        xg = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(conv(xg).square().sum(), xg, create_graph=True)
        grads.append(torch.autograd.grad(g.square().sum(), conv.weight)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    ("threads_count", "batch", "kwargs"),
    [
        (2, 1, {}),  # two torch threads: oneDNN splits the work
        (1, lenet.NATIVE_MAX_BATCH + 1, {}),  # a larger batch
        (1, 1, {"dilation": 2}),  # settings the native kernel does not take
        (1, 1, {"groups": 2}),
        (1, 1, {"padding": "same"}),
        (1, 1, {"padding_mode": "reflect", "padding": 2}),
    ],
)
def test_other_cases_keep_torchs_own_path(threads: None, threads_count: int, batch: int, kwargs: dict) -> None:
    torch.set_num_threads(threads_count)
    ours, plain = _pair(**kwargs)
    x = torch.rand(batch, 6, 14, 14, generator=torch.Generator().manual_seed(3))
    assert _backward_name(ours, x) == _backward_name(plain, x) != "SlowConv2DBackward0"
    torch.testing.assert_close(ours(x), plain(x), rtol=0, atol=0)


def test_both_lenets_use_it_and_keep_their_state_dict_keys() -> None:
    for build in (lenet.build_lenet, lenet.build_lenet_classic):
        model = build()
        assert [type(m) for m in model.modules() if isinstance(m, nn.Conv2d)] == [lenet.Conv2d, lenet.Conv2d]
        assert "conv1.weight" in model.state_dict() and "conv2.bias" in model.state_dict()
        assert repr(model.conv1).startswith("Conv2d(1, 6, kernel_size=(5, 5)")


def test_traced_and_exported_graphs_keep_torchs_own_convolution(threads: None) -> None:
    torch.set_num_threads(1)  # where the eager forward takes the native kernel
    model = lenet.build_lenet().eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    traced = torch.jit.trace(model, x)
    assert "thnn_conv2d" not in str(traced.inlined_graph) and "_convolution" in str(traced.inlined_graph)
    exported = torch.export.export(model, (x,))
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "aten.conv2d.default" in targets and not any("slow_conv" in t for t in targets)
    torch.testing.assert_close(exported.module()(x), model(x), rtol=1e-5, atol=1e-5)
