"""What ListPrecomputed reads from the offline jobs' stores: an atlas layer's folders (units counted,
stored batches read back from the units) and the robustness results of some weights, on disk only."""

from __future__ import annotations

import numpy as np

from server.stores.atlas import AtlasKey, AtlasStore, AtlasUnit, list_folders
from server.stores.results import ResultsStore


def _unit(unit: int, batch: list[int]) -> AtlasUnit:
    empty = np.zeros(0, np.float32)
    return AtlasUnit(unit, np.zeros((1, 4, 4), np.float32), 0.5, batch, empty, empty.astype(np.int64), empty, empty)


def test_atlas_folders_of_a_layer_with_their_stored_batches(tmp_path) -> None:
    store = AtlasStore(tmp_path)
    key = AtlasKey("w", "relu2", {"steps": 8, "seed": 0}, 2, "base")
    store.open(key, {"model": "lenet", "dataset": "fashion-mnist-test"})
    for unit, batch in ((0, [0, 1]), (1, [0, 1]), (2, [2, 3])):  # unit 3 is missing: a killed job
        store.write(key, _unit(unit, batch))
    other = AtlasKey("w", "conv1", {"steps": 8, "seed": 0}, 2, "base")
    store.open(other, {"model": "lenet", "dataset": "fashion-mnist-test"})
    store.write(other, _unit(0, [0, 1]))
    store.open(AtlasKey("other weights", "relu2", {}, 2, "base"), {"model": "lenet", "dataset": "d"})

    (found,) = list_folders(tmp_path, "w", "relu2")
    assert (found.layer, found.batch, found.dataset, found.units) == ("relu2", 2, "fashion-mnist-test", 3)
    assert found.params == {"steps": 8, "seed": 0} and found.batches == [[0, 1], [2, 3]]
    every = list_folders(tmp_path, "w")
    assert [(f.layer, f.units, f.batches) for f in every] == [("conv1", 1, []), ("relu2", 3, [])]
    assert list_folders(tmp_path / "absent", "w") == []


def test_robustness_results_of_some_weights_on_a_dataset(tmp_path) -> None:
    store = ResultsStore(tmp_path)
    minimal = {"pgd": np.zeros(3, np.float32)}
    store.write("a" * 64, b"one", b"png", minimal, {"weights_sha256": "w", "dataset": "test", "limit": 3})
    store.write("b" * 64, b"two", b"png", minimal, {"weights_sha256": "w", "dataset": "train", "limit": 3})
    store.write("c" * 64, b"three", b"png", minimal, {"weights_sha256": "v", "dataset": "test", "limit": 3})
    (tmp_path / ".tmp-partial").mkdir()  # a result being written is not listed
    (tmp_path / ".tmp-partial" / "meta.json").write_text('{"weights_sha256": "w"}')

    assert sorted(body for _, body in store.stored("w")) == [b"one", b"two"]
    ((meta, body),) = store.stored("w", "test")
    assert body == b"one" and meta["limit"] == 3 and meta["key"] == "a" * 64
    assert ResultsStore(tmp_path / "absent").stored("w") == []
