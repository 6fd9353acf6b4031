"""interp-robustness: the Ray engine's robustness equals AttackDataset's in-process computation on
the same images and seeds, and the server answers the identical AttackDataset request from the store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.attacks.robustness import AttackDatasetParams, resolve_dataset_params, robustness
from models.dataset_registry import DatasetRegistry
from models.hub import ModelHub
from server.app import weights_options
from server.handlers.attacks import attack_images
from server.robustness_command import run_and_store
from server.robustness_job import run_robustness
from tests.conftest import require_fashion_mnist
from tests.support.servers import test_config

METHODS, EPSILONS, LIMIT = ["pgd"], [0.02, 0.05, 0.1], 48
PARAMS = AttackDatasetParams(steps=5, seed=3, batch_size=16)


@pytest.fixture(scope="module")
def lenet():
    hub = ModelHub(["lenet"], weights_options(test_config()))
    hub.wait()
    return hub.ready("lenet")


@pytest.fixture(scope="module")
def dataset():
    require_fashion_mnist()
    return DatasetRegistry().get("fashion-mnist-test")


def test_robustness_on_ray_equals_attack_dataset_in_process(ray_local, lenet, dataset):
    x, y, _ = attack_images(dataset, lenet.spec, LIMIT, True, "cpu")
    params = resolve_dataset_params(PARAMS, METHODS, lenet.spec.num_classes)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # as each actor
    local_seen = []
    try:
        want = robustness(lenet.require_ready(), x, y, methods=METHODS, epsilons=EPSILONS, params=params)
        local = run_robustness(lenet.require_ready(), x, y, methods=METHODS, epsilons=EPSILONS, params=params,
                               on_progress=local_seen.append)  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    # the local engine reports progress too (interp-robustness printed nothing until the end)
    assert local_seen and local_seen[-1].images_done == local_seen[-1].total == LIMIT
    last = f"{METHODS[-1]}, method {len(METHODS)} of {len(METHODS)}"
    assert local_seen[0].stage.startswith(METHODS[0]) and local_seen[-1].stage == last  # one method, then the next
    assert torch.equal(local.clean_correct, want.clean_correct)
    seen = []
    got = run_robustness(lenet.require_ready(), x, y, methods=METHODS, epsilons=EPSILONS, params=params,
                         engine="ray", on_progress=seen.append)  # fmt: skip
    assert seen[-1].images_done == seen[-1].total == LIMIT and len(seen) == LIMIT // 16
    assert torch.equal(got.clean_correct, want.clean_correct)
    for g, w in zip(got.curves, want.curves, strict=True):
        assert g.accuracy == w.accuracy and g.levels == w.levels
        assert (g.runs, g.non_monotone) == (w.runs, w.non_monotone)
        assert torch.equal(g.minimal, w.minimal)
    assert 0 < want.curves[0].accuracy[-1] < want.curves[0].accuracy[0]  # the curve falls: not a trivial case


def test_the_server_answers_attack_dataset_from_the_stored_result(lenet, dataset, tmp_path):
    import grpc

    from protos import interp_pb2 as pb
    from protos import interp_pb2_grpc
    from server.app import create_server

    index_dir = tmp_path / "index"
    folder, stored = run_and_store(lenet, dataset, index_dir=index_dir, methods=METHODS, epsilons=EPSILONS,
                                   params=PARAMS, limit=LIMIT)  # fmt: skip
    assert {p.name for p in folder.iterdir()} == {"result.binpb", "curve.png", "minimal.npz", "meta.json"}
    with np.load(folder / "minimal.npz") as minimal:
        assert minimal["pgd"].shape == (LIMIT,)
    srv, port = create_server(test_config(index_dir=index_dir))
    srv.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = interp_pb2_grpc.InterpStub(channel)

            def attack(limit: int) -> pb.AttackDatasetResult:
                request = pb.AttackDatasetRequest(
                    model="lenet", dataset="fashion-mnist-test", methods=METHODS, epsilons=EPSILONS, limit=limit,
                    params=pb.AttackDatasetParams(steps=5, seed=3, batch_size=16),
                )  # fmt: skip
                return [e.result for e in stub.AttackDataset(request) if e.WhichOneof("event") == "result"][-1]

            hit = attack(LIMIT)
            assert hit.precomputed and hit.stamp.weights_sha256 == lenet.weights.sha256
            assert list(hit.curves[0].accuracy) == list(stored.curves[0].accuracy)
            miss = attack(LIMIT // 2)  # another request: computed now
            assert not miss.precomputed and miss.images == LIMIT // 2
        from client import InterpClient
        from protos.codec import from_tensor

        with InterpClient(f"127.0.0.1:{port}") as client:  # what the explorer's robustness page reads
            (listed,) = client.list_precomputed("lenet", dataset="fashion-mnist-test").robustness
            assert (listed.limit, listed.engine) == (LIMIT, "local")
            assert listed.result.precomputed and listed.result.images == LIMIT
            assert [c.method for c in listed.result.curves] == METHODS
            assert listed.result.curves[0].accuracy == tuple(stored.curves[0].accuracy)
            np.testing.assert_array_equal(listed.result.curves[0].minimal, from_tensor(hit.curves[0].minimal))
            assert client.list_precomputed("lenet", dataset="fashion-mnist-train").robustness == ()
            import argparse

            from client.cli_text import text_robustness

            assert "not computed now" in text_robustness(listed.result, argparse.Namespace())  # the CLI says so
    finally:
        srv.stop(grace=None)


def test_a_stored_result_answers_its_methods_in_any_order(lenet, dataset, tmp_path):
    """interp-robustness stored fgsm,pgd; AttackDataset asking pgd,fgsm is answered from it (it was
    computed again), its curves in the request's order. Repeated methods are not reordered."""
    import grpc

    from protos import interp_pb2 as pb
    from protos import interp_pb2_grpc
    from server.app import create_server

    index_dir = tmp_path / "index"
    _, stored = run_and_store(lenet, dataset, index_dir=index_dir, methods=["fgsm", "pgd"], epsilons=EPSILONS,
                              params=PARAMS, limit=16)  # fmt: skip
    srv, port = create_server(test_config(models=("lenet",), index_dir=index_dir))
    srv.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = interp_pb2_grpc.InterpStub(channel)
            request = pb.AttackDatasetRequest(
                model="lenet", dataset="fashion-mnist-test", methods=["pgd", "fgsm"], epsilons=EPSILONS, limit=16,
                params=pb.AttackDatasetParams(steps=5, seed=3, batch_size=16),
            )  # fmt: skip
            events = list(stub.AttackDataset(request, timeout=300))
            result = events[-1].result
            assert result.precomputed and [c.method for c in result.curves] == ["pgd", "fgsm"]
            by_method = {c.method: list(c.accuracy) for c in stored.curves}
            assert [list(c.accuracy) for c in result.curves] == [by_method["pgd"], by_method["fgsm"]]
    finally:
        srv.stop(grace=None)
