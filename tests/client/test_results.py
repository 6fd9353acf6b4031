"""Results built from the reply descriptors: every reply field read, conversions by field type."""

from __future__ import annotations

import numpy as np
import pytest

from client.results import RESULTS, EmbeddingResult, KernelsResult, TopActivationsResult, is_folder, save_pngs
from client.results._build import _CLASSES, unread_fields
from protos import interp_pb2 as pb
from protos.codec import to_tensor
from protos.methods import METHODS


def test_every_rpc_has_a_converter_and_every_result_reads_every_reply_field() -> None:
    assert set(RESULTS) == {m.rpc for m in METHODS}
    for cls in set(_CLASSES.values()):
        assert unread_fields(cls) == [], cls.__name__


def test_conversions_follow_the_field_types() -> None:
    entry = pb.TopEntry(image_id=3, box=pb.Box(y0=1, x0=2, y1=5, x1=6), crop=to_tensor(np.zeros((3, 4, 5), np.float32)))
    reply = pb.TopActivationsResponse(
        stamp=pb.ModelStamp(model="lenet", request_id="r", elapsed_ms=2.0),
        channels=[pb.ChannelTop(channel=7, entries=[entry])],
        grid_png=b"png",
    )
    result = RESULTS["TopActivations"](reply)
    assert isinstance(result, TopActivationsResult) and result.model == "lenet" and result.request_id == "r"
    top = result.channels[0].entries[0]
    assert result.channels[0].channel == 7 and top.box == (1, 2, 5, 6)
    assert top.crop.shape == (4, 5, 3)  # an image tensor, channels last
    assert top.projection is None and top.crop_png == b""  # unset tensor, empty bytes kept as bytes
    kernels = RESULTS["Kernels"](pb.KernelsResponse(weights=to_tensor(np.ones((2, 1, 3, 3), np.float32))))
    assert isinstance(kernels, KernelsResult) and kernels.weights.shape == (2, 1, 3, 3) and kernels.bias is None
    embedding = RESULTS["Embedding"](
        pb.EmbeddingResult(image_ids=[5, 6], labels=[1, -1], resolved=pb.EmbeddingParams(seed=3))
    )
    assert isinstance(embedding, EmbeddingResult) and embedding.coordinates.shape == (0, 2)
    assert embedding.image_ids.dtype == np.int64 and embedding.labels.dtype == np.int32
    assert embedding.params == {"seed": 3}
    info = RESULTS["GetServerInfo"](pb.ServerInfo(limits=pb.Limits(max_steps=9), libraries={"b": "2", "a": "1"}))
    assert info.limits["max_steps"] == 9 and info.limits["max_channels"] == 0 and list(info.libraries) == ["a", "b"]
    event = RESULTS["VisualizeFilter"]  # the stream's result; its progress events are ProgressEvent
    assert event(pb.VisualizeFilterResult(channels=[1, 2])).channels == (1, 2)


def test_list_replies_are_lists_of_their_item_class() -> None:
    datasets = RESULTS["ListDatasets"](pb.ListDatasetsResponse(datasets=[pb.DatasetInfo(name="d", classes=["a"])]))
    assert isinstance(datasets, list) and datasets[0].name == "d" and datasets[0].classes == ("a",)
    models = RESULTS["ListModels"](pb.ListModelsResponse(models=[pb.ModelInfo(name="m", status=pb.ModelInfo.READY)]))
    assert isinstance(models, list) and models[0].ready


@pytest.mark.parametrize(
    ("dest", "folder"),
    [("cls/", True), ("out/attack", True), ("out/dream.png", False), ("out/x.jpeg", False)],
)
def test_output_paths_read_the_same_everywhere(tmp_path, dest, folder) -> None:
    assert is_folder(dest) is folder
    paths = save_pngs(
        [("main", b"1"), ("other", b"2")], tmp_path / dest if not dest.endswith("/") else f"{tmp_path}/{dest}"
    )
    if folder:
        assert [p.name for p in paths] == ["main.png", "other.png"] and paths[0].parent.is_dir()
    else:
        stem, suffix = dest.rsplit("/", 1)[1].rsplit(".", 1)
        assert [p.name for p in paths] == [f"{stem}.{suffix}", f"{stem}_other.{suffix}"]
    existing = tmp_path / "existing.dir"
    existing.mkdir()
    assert is_folder(existing)


def test_a_reply_without_a_class_of_its_own_gets_one_from_its_descriptor(monkeypatch, tmp_path) -> None:
    from client import cli_text
    from client.results import _build, converter
    from protos.methods import by_rpc

    reply = pb.NearestNeighborsResponse(
        stamp=pb.ModelStamp(model="lenet", request_id="r"),
        input=pb.PreprocessedInput(tensor=to_tensor(np.zeros((1, 6, 5), np.float32)), png=b"in"),
        neighbors=[pb.Neighbor(image_id=4, distance=0.5, image=to_tensor(np.zeros((1, 6, 5), np.float32)), png=b"n")],
        grid_png=b"grid",
    )
    known = {k: v for k, v in _build._CLASSES.items() if "Neighbor" not in k}  # as if NearestNeighbors were new
    monkeypatch.setattr(_build, "_CLASSES", known)
    result = converter(by_rpc("NearestNeighbors"))(reply)
    assert type(result).__name__ == "NearestNeighborsResponse" and type(result).__module__ == "client.results.generated"
    assert result.model == "lenet" and result.request_id == "r" and result.input.shape == (6, 5, 1)
    assert result.neighbors[0].image_id == 4 and result.neighbors[0].image.shape == (6, 5, 1)
    assert [p.name for p in result.save(tmp_path / "nn/")] == ["grid.png", "input.png", "neighbor_00_4.png"]
    text = cli_text.generic_text(result)
    assert "neighbors:\nRANK  IMAGE_ID" in text  # the nested results as their own table
    assert "request_id" not in text and "weights_sha256" not in text  # the stamp line says them
    assert _build.unread_fields(type(result)) == []


def test_top_activations_save_every_entry_picture_and_its_projections(tmp_path) -> None:
    from client.cli_commands import COMMANDS

    entries = [
        pb.TopEntry(image_id=i, crop_png=b"crop%d" % i, image_png=b"image%d" % i,
                    projection=to_tensor(np.full((1, 4, 4), i, np.float32)))
        for i in range(2)
    ]  # fmt: skip
    reply = pb.TopActivationsResponse(channels=[pb.ChannelTop(channel=5, entries=entries)], grid_png=b"grid")
    result = RESULTS["TopActivations"](reply)
    written = result.save(tmp_path / "top")
    assert [p.name for p in written] == [
        "grid.png", "channel_0005_00_crop.png", "channel_0005_00_image.png",
        "channel_0005_01_crop.png", "channel_0005_01_image.png",
        "channel_0005_00_projection.npy", "channel_0005_01_projection.npy",  # save() writes them, for -o too
    ]  # fmt: skip
    assert (tmp_path / "top" / "channel_0005_01_image.png").read_bytes() == b"image1"
    assert COMMANDS["top"].files is None  # nothing beside save(): the CLI's -o is save()
    assert np.load(written[-1]).shape == (4, 4, 1) and float(np.load(written[-1]).max()) == 1.0
    beside = result.save(tmp_path / "t.png")  # a file path: the others beside it, named after it
    assert [p.name for p in beside][-1] == "t_channel_0005_01_projection.npy"


def test_the_precomputed_table_tells_stored_results_apart() -> None:
    """interp precomputed: batches, the visualizations' parameters, and each stored curve's methods,
    epsilons and parameters (two stored robustness runs read alike before: RANK, LIMIT, ENGINE)."""
    import argparse

    from client.cli_text import text_precomputed

    params = pb.VisualizeFilterParams(steps=8, seed=3, image_size=28, objective="channel")
    atlas = pb.AtlasLayer(layer="relu2", resolved=params, batch=8, dataset="fashion-mnist-test", units=16,
                          batches=[pb.AtlasBatch(channels=[0, 1])])  # fmt: skip
    curve = pb.AttackDatasetResult(epsilons=[0.01, 0.03], clean_accuracy=0.9, true_labels=True,
                                   resolved=pb.AttackDatasetParams(steps=20))  # fmt: skip
    curve.curves.add(method="fgsm")
    curve.curves.add(method="pgd")
    stored = pb.StoredRobustness(result=curve, limit=50, engine="ray")
    reply = pb.ListPrecomputedResponse(atlas=[atlas], robustness=[stored])
    text = text_precomputed(RESULTS["ListPrecomputed"](reply), argparse.Namespace())
    assert "steps=8" in text and "seed=3" in text and "fashion-mnist-test" in text
    assert "fgsm,pgd" in text and "0.01,0.03" in text and "ray" in text and "steps=20" in text
