"""The committed stubs are exactly what the pinned generator makes from interp.proto."""

from __future__ import annotations

from pathlib import Path

from protos import generate

ROOT = Path(__file__).resolve().parents[2]


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    generate.generate(tmp_path)
    for name in ("interp_pb2.py", "interp_pb2.pyi", "interp_pb2_grpc.py", "interp_docs.py"):
        fresh = (tmp_path / "protos" / name).read_text()
        committed = (ROOT / "protos" / name).read_text()
        assert fresh == committed, f"protos/{name} is stale: run `make protos` and commit"


def test_contract_defines_every_rpc() -> None:
    from protos import interp_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["Interp"]
    assert service.full_name == "interp.v1.Interp"
    methods = {m.name: m for m in service.methods}
    assert set(methods) == {
        "ListModels",
        "DescribeModel",
        "Classify",
        "Activations",
        "Kernels",
        "Saliency",
        "Attack",
        "VisualizeFilter",
        "DeepDream",
        "InterpolateFeatures",
        "GetServerInfo",
        "MinimalAttack",
        "AttackDataset",
        "ListPrecomputed",
        "ListDatasets",
        "BuildIndex",
        "TopActivations",
        "NearestNeighbors",
        "Embedding",
        "PlaceImages",
        "DatasetImages",
        "Watch",
    }
    streaming = {name for name, m in methods.items() if m.server_streaming}
    assert streaming == {
        "VisualizeFilter", "DeepDream", "InterpolateFeatures", "AttackDataset", "BuildIndex", "Embedding", "Watch"
    }  # fmt: skip
