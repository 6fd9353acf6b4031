"""interp-atlas: the Ray engine's atlas equals the local engine's, a killed job resumes computing
only the missing units, VisualizeFilter answers a stored batch from the atlas, and ListPrecomputed
lists it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from interp.errors import Cancelled
from interp.synthesis.feature_vis_params import FeatureVisParams
from models.dataset_registry import DatasetRegistry
from models.hub import ModelHub
from server.app import weights_options
from server.atlas_command import run_atlas
from server.stores.atlas import AtlasStore, atlas_dir
from tests.conftest import require_fashion_mnist
from tests.support.servers import test_config

LAYER = "relu2"  # 16 channels
BATCH = 4
BASE = FeatureVisParams(seed=0, steps=16)


@pytest.fixture(scope="module")
def lenet():
    hub = ModelHub(["lenet"], weights_options(test_config()))
    hub.wait()
    return hub.ready("lenet")


@pytest.fixture(scope="module")
def dataset():
    require_fashion_mnist()
    return DatasetRegistry().get("fashion-mnist-test")


def _atlas(index_dir: Path) -> dict[int, tuple[np.ndarray, ...]]:
    """Every stored unit of the one atlas folder under ``index_dir``: image, activation, batch, top-9."""
    (folder,) = [p for p in atlas_dir(index_dir).iterdir() if p.is_dir()]
    units = {}
    for path in folder.glob("*.npz"):
        with np.load(path) as data:
            units[int(path.stem)] = tuple(data[k] for k in ("image", "activation", "batch", "top_ids", "top_values"))
    return units


def _run(lenet, dataset, index_dir: Path, **kw):
    return run_atlas(lenet, dataset, [LAYER], index_dir=index_dir, batch=BATCH, base=BASE, threads=1, **kw)


@pytest.fixture(scope="module")
def local_atlas(lenet, dataset, tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("local") / "index"
    totals = _run(lenet, dataset, index_dir)
    assert totals["computed"] == 16 and totals["reused"] == 0
    return index_dir, _atlas(index_dir)


def _assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want) == list(range(16))
    for unit, parts in want.items():
        for a, b in zip(got[unit], parts, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"unit {unit}")


def test_ray_atlas_equals_local_atlas_unit_for_unit(ray_local, lenet, dataset, local_atlas, tmp_path):
    seen = []
    totals = _run(lenet, dataset, tmp_path / "index", engine="ray", actors=2, on_progress=lambda _l, p: seen.append(p))
    assert totals["computed"] == 16
    assert seen[-1].units_done == seen[-1].total == 16 and seen[-1].eta_s == 0.0
    _assert_same(_atlas(tmp_path / "index"), local_atlas[1])
    (index,) = [p for p in (tmp_path / "index").iterdir() if p.is_dir()]  # the index, built by Ray
    assert '"engine": "ray"' in (index / "meta.json").read_text()


def _stop_after(units: int, seen: list) -> object:
    return lambda: sum(p.units_done for p in seen[-1:]) >= units


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_killed_job_resumes_with_only_the_missing_units(engine, ray_local, lenet, dataset, local_atlas, tmp_path):
    index_dir, seen = tmp_path / "index", []
    with pytest.raises(Cancelled):
        _run(lenet, dataset, index_dir, engine=engine, on_progress=lambda _l, p: seen.append(p),
             should_stop=_stop_after(8, seen))  # fmt: skip
    stored = len(_atlas(index_dir))
    assert 8 <= stored < 16 and stored % BATCH == 0
    totals = _run(lenet, dataset, index_dir, engine=engine)
    assert totals == {"computed": 16 - stored, "reused": stored, "folders": totals["folders"]}
    _assert_same(_atlas(index_dir), local_atlas[1])
    again = _run(lenet, dataset, index_dir, engine=engine)
    assert again["computed"] == 0 and again["reused"] == 16  # a finished atlas is never recomputed


def test_visualize_filter_answers_a_stored_batch_from_the_atlas(local_atlas):
    import grpc

    from protos import interp_pb2 as pb
    from protos import interp_pb2_grpc
    from server.app import create_server

    index_dir, units = local_atlas
    srv, port = create_server(test_config(index_dir=index_dir))
    srv.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = interp_pb2_grpc.InterpStub(channel)

            def visualize(channels: list[int], steps: int = 16) -> pb.VisualizeFilterResult:
                request = pb.VisualizeFilterRequest(
                    model="lenet", layer=LAYER, channels=channels, params=pb.VisualizeFilterParams(steps=steps, seed=0)
                )
                events = [e for e in stub.VisualizeFilter(request) if e.WhichOneof("event") == "result"]
                return events[-1].result

            hit = visualize([4, 5, 6, 7])
            assert hit.from_atlas
            images = np.frombuffer(hit.images.data, dtype=np.float32).reshape(tuple(hit.images.shape))
            np.testing.assert_array_equal(images, np.stack([units[c][0] for c in (4, 5, 6, 7)]))
            assert list(hit.activations) == [float(units[c][1]) for c in (4, 5, 6, 7)]
            assert not visualize([4, 5]).from_atlas  # not one stored batch: computed
            assert not visualize([4, 5, 6, 7], steps=17).from_atlas  # other parameters: computed
        from client import InterpClient

        with InterpClient(f"127.0.0.1:{port}") as client:  # what the explorer reads: ListPrecomputed
            (listed,) = client.list_precomputed("lenet", layer=LAYER).atlas
            assert (listed.layer, listed.batch, listed.units) == (LAYER, BATCH, 16)
            assert listed.dataset == "fashion-mnist-test"
            batches = [list(range(i, i + BATCH)) for i in range(0, 16, BATCH)]
            assert [list(b.channels) for b in listed.batches] == batches
            assert listed.params["steps"] == 16 and listed.params["seed"] == 0
            job = {name: listed.params[name] for name in ("steps", "seed", "image_size")}  # the explorer sends these
            assert client.visualize_filter("lenet", LAYER, [8, 9, 10, 11], **job).from_atlas
            (summary,) = client.list_precomputed("lenet").atlas  # every layer: without the batches
            assert summary.units == 16 and summary.batches == ()
            assert client.list_precomputed("lenet", layer="conv1").atlas == ()
    finally:
        srv.stop(grace=None)
    assert AtlasStore(atlas_dir(index_dir)).lookup("other weights", LAYER, BASE, [0, 1, 2, 3]) is None


@pytest.mark.parametrize("command", ["atlas", "index"])
def test_an_unknown_layer_ends_the_job_with_the_models_answer(command, tmp_path) -> None:
    """``--layers relu9`` printed UnknownLayer's traceback; now the command's one line, with the
    close name and the model's layers, and exit status 1 (a string to sys.exit)."""
    require_fashion_mnist()
    from server import atlas_command, index_command

    main = atlas_command.main if command == "atlas" else index_command.main
    with pytest.raises(SystemExit) as info:
        main(["lenet", "fashion-mnist-test", "--layers", "relu2,relu9", "--index-dir", str(tmp_path)])
    text = str(info.value.code)
    assert text.startswith(f"interp-{command}: --layers: lenet has no layer 'relu9' (did you mean 'relu4'?)")
    assert "module paths: normalize, conv1" in text and not any(tmp_path.iterdir())
