"""The activation index against independent oracles, on the trained LeNet and Fashion-MNIST test (10k).

The oracles never use the index code: a plain forward through a prefix of the nn.Sequential, every
per-image spatial maximum kept and sorted with numpy (ties by image id), brute-force distances in
float64.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from interp.dataset.crops import Box, clip_box, crop_field, receptive_box
from interp.dataset.index import IndexAccumulator, index_batch
from interp.dataset.neighbours import distances, nearest
from interp.dataset.top_k import Candidates, TopK, unit_pass
from interp.errors import Cancelled, InvalidInput
from models.catalogue import layer_catalogue
from models.dataset_registry import DatasetRegistry, FolderDataset
from models.lenet import build_lenet
from models.registry import get_spec
from protos.interp_docs import FIELD_DOCS
from server.stores.index import IndexStore, IndexUnavailable, base_key, default_batch, full_key, images_by_id
from tests.conftest import require
from tests.support.tiny_models import frozen

WEIGHTS = sorted((Path(__file__).resolve().parents[2] / "models" / "weights").glob("lenet5_fashion*mnist*.pt"))
LAYERS = ["relu1", "relu2", "relu3", "relu4"]
K = 9


def batch_top(
    output: torch.Tensor, ids: torch.Tensor, k: int, floor: torch.Tensor | None = None, strict: bool = False
) -> TopK:
    """One layer's top-k of a batch (B, C, H, W) or (B, F), merged alone: value descending, ties by smaller id.

    ``ids`` (B,) increasing; ``floor`` (C,) or None filters as in :func:`unit_pass` (entries
    below it are left out, not kept as -inf).
    """
    unit = unit_pass(output, k, floor, strict)
    channels = int(output.shape[1])
    top = TopK.empty(channels, k)
    if unit.table is not None:
        values, ys, xs = unit.table
        top.merge_topk(TopK(values.T, ids.expand(channels, -1), ys.T, xs.T))
    else:
        top.merge_topk(Candidates(unit.channels, unit.values, ids[unit.positions], unit.ys, unit.xs).padded(channels))
    return top


@pytest.fixture(scope="module")
def dataset():
    registry = DatasetRegistry()
    ds = registry.get("fashion-mnist-test")
    try:
        ds.arrays()
    except FileNotFoundError as exc:
        require(False, f"Fashion-MNIST test split not installed: {exc}")
    return ds


@pytest.fixture(scope="module")
def trained():
    require(bool(WEIGHTS), "no trained LeNet checkpoint in models/weights")
    model = build_lenet()
    model.load_state_dict(torch.load(WEIGHTS[-1], map_location="cpu", weights_only=True))
    return frozen(model)


@pytest.fixture(scope="module")
def random_lenet():
    torch.manual_seed(0)
    return frozen(build_lenet())


def _build(store: IndexStore, model, name: str, dataset, layers=LAYERS, k=K):
    spec = get_spec("lenet").preprocessing
    return store.build(
        model, model_name="lenet", weights_sha256=name, spec=spec, dataset=dataset, layers=layers, k=k, batch_size=500
    )


@pytest.fixture(scope="module")
def index(tmp_path_factory, trained, dataset):
    torch.set_num_threads(1)
    store = IndexStore(tmp_path_factory.mktemp("index"))
    stored, reused, _ = _build(store, trained, "trained", dataset)
    assert not reused
    return store, stored


@pytest.fixture(scope="module")
def pixels(dataset) -> torch.Tensor:
    return torch.from_numpy(dataset.arrays()[0]).float().div(255).unsqueeze(1)


def _prefix(model, layer: str) -> torch.nn.Sequential:
    names = list(model._modules)
    return model[: names.index(layer) + 1]


def _oracle_maps(model, x: torch.Tensor, layer: str) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([_prefix(model, layer)(chunk) for chunk in x.split(1000)])


def test_top_k_equals_brute_force_oracle(index, trained, pixels):
    _, stored = index
    for layer in ("relu1", "relu2", "relu3"):
        out = _oracle_maps(trained, pixels, layer).numpy()
        per_image = out.reshape(out.shape[0], out.shape[1], -1).max(axis=2) if out.ndim == 4 else out  # (N, C)
        values, ids, ys, xs = stored.top(layer)
        ids_all = np.arange(per_image.shape[0])
        for c in range(per_image.shape[1]):
            order = np.lexsort((ids_all, -per_image[:, c]))[:K]  # value descending, then id
            np.testing.assert_array_equal(ids[c], order, err_msg=f"{layer}:{c}")
            np.testing.assert_array_equal(values[c], per_image[order, c])
            if out.ndim == 4:  # the location is the first maximum of the map (row-major)
                flat = out[order, c].reshape(K, -1).argmax(axis=1)
                np.testing.assert_array_equal(ys[c] * out.shape[3] + xs[c], flat)


def test_rerunning_the_model_reproduces_every_stored_value(index, trained, dataset):
    _, stored = index
    spec = get_spec("lenet").preprocessing
    for layer in LAYERS:
        values, ids, ys, xs = stored.top(layer)
        x = torch.stack(images_by_id(dataset, spec, ids.reshape(-1).tolist()))
        out = _oracle_maps(trained, x, layer)
        c = np.repeat(np.arange(ids.shape[0]), K)
        if out.dim() == 4:
            again = out[np.arange(len(c)), c, ys.reshape(-1), xs.reshape(-1)]
        else:
            again = out[np.arange(len(c)), c]
        np.testing.assert_allclose(again.numpy(), values.reshape(-1), rtol=1e-5, atol=1e-6)


def test_noise_outside_the_receptive_field_leaves_the_unit_unchanged(index, trained, dataset):
    _, stored = index
    spec = get_spec("lenet").preprocessing
    catalogue = {info.name: info for info in layer_catalogue(build_lenet(), (1, 28, 28), {})}
    generator = torch.Generator().manual_seed(0)
    checked = 0
    for layer in ("relu1", "relu2"):
        info = catalogue[layer]
        values, ids, ys, xs = stored.top(layer)
        images = images_by_id(dataset, spec, ids.reshape(-1).tolist())
        noisy, inside_changed, where = [], [], []
        for n, (c, j) in enumerate(np.ndindex(*ids.shape)):
            box = receptive_box(info.rf_size, info.rf_jump, info.rf_start, int(ys[c, j]), int(xs[c, j]))
            inner = clip_box(box, 28, 28)
            crop, _ = crop_field(images[n], box)
            assert crop.shape[1:] == (info.rf_size, info.rf_size)
            x = torch.rand(images[n].shape, generator=generator)
            x[:, inner.y0 : inner.y1, inner.x0 : inner.x1] = images[n][:, inner.y0 : inner.y1, inner.x0 : inner.x1]
            noisy.append(x)
            # and noise inside the field does change it: the box is not too large to mean anything
            y = images[n].clone()
            y[:, inner.y0 : inner.y1, inner.x0 : inner.x1] = torch.rand(
                (1, inner.y1 - inner.y0, inner.x1 - inner.x0), generator=generator
            )
            inside_changed.append(y)
            where.append((c, int(ys[c, j]), int(xs[c, j]), float(values[c, j])))
        out = _oracle_maps(trained, torch.stack(noisy), layer)
        out_inside = _oracle_maps(trained, torch.stack(inside_changed), layer)
        changed = 0
        for n, (c, y, x, value) in enumerate(where):
            assert abs(float(out[n, c, y, x]) - value) <= 1e-4 * max(1.0, abs(value)), (layer, c, y, x)
            changed += abs(float(out_inside[n, c, y, x]) - value) > 1e-3 * max(1.0, abs(value))
            checked += 1
        assert changed >= 0.9 * len(where)
    assert checked == (6 + 16) * K


def _purity(stored, layer: str, labels: np.ndarray) -> float:
    values, ids, _, _ = stored.top(layer)
    shares = [
        np.bincount(labels[ids[c]], minlength=10).max() / K for c in range(ids.shape[0]) if values[c, -1] > 0
    ]  # live units: all top-9 activations above 0
    return float(np.mean(shares))


def test_top_images_of_trained_relu4_units_are_class_pure(index, random_lenet, dataset, tmp_path, capsys):
    _, stored = index
    labels = dataset.labels()
    trained_purity = _purity(stored, "relu4", labels)
    random_stored, _, _ = _build(IndexStore(tmp_path), random_lenet, "random", dataset, layers=["relu4"])
    random_purity = _purity(random_stored, "relu4", labels)
    with capsys.disabled():
        print(f"\ntop-9 class purity relu4: trained {trained_purity:.3f}, random weights {random_purity:.3f}")
    assert trained_purity >= 0.8
    assert trained_purity >= random_purity + 0.15


def test_nearest_neighbours_equal_brute_force_and_share_the_class(index, trained, pixels, dataset, capsys):
    _, stored = index
    labels = dataset.labels()
    features = torch.from_numpy(stored.features("relu4"))
    queries = np.random.default_rng(0).choice(len(labels), 500, replace=False)
    reference = _oracle_maps(trained, pixels, "relu4").double().numpy()
    np.testing.assert_allclose(features.numpy(), reference, rtol=1e-5, atol=1e-5)
    for metric in ("l2", "cosine"):
        ids, dist = nearest(features, features[queries], 11, metric)
        q = reference[queries]
        if metric == "l2":
            brute = np.sqrt(
                np.clip(
                    (q * q).sum(1)[:, None] - 2 * q @ reference.T + (reference * reference).sum(1)[None, :], 0, None
                )
            )
        else:
            norms = np.linalg.norm(reference, axis=1).clip(1e-12)
            brute = 1 - (q @ reference.T) / np.outer(norms[queries], norms)
        expected = np.sort(brute, axis=1, kind="stable")[:, :11]
        np.testing.assert_allclose(dist.numpy(), expected, atol=1e-4)
        gaps_ok = np.diff(expected, axis=1).min(axis=1) > 1e-4  # no near-tie: the ids must agree exactly
        brute_ids = np.argsort(brute, axis=1, kind="stable")[:, :11]
        np.testing.assert_array_equal(ids.numpy()[gaps_ok], brute_ids[gaps_ok])
    ids, _ = nearest(features, features[queries], 11, "l2")
    neighbours = [[i for i in row if i != query][:10] for row, query in zip(ids.tolist(), queries, strict=True)]
    agreement = float(np.mean([np.mean(labels[n] == labels[q]) for n, q in zip(neighbours, queries, strict=True)]))
    flat = pixels.flatten(1)
    pixel_ids, _ = nearest(flat, flat[queries], 11, "l2")
    pixel_neighbours = [[i for i in row if i != q][:10] for row, q in zip(pixel_ids.tolist(), queries, strict=True)]
    baseline = float(np.mean([np.mean(labels[n] == labels[q]) for n, q in zip(pixel_neighbours, queries, strict=True)]))
    with capsys.disabled():
        print(f"\n10-NN class agreement over 500 queries: relu4 {agreement:.3f}, pixels {baseline:.3f}")
    assert agreement >= 0.85
    assert agreement > baseline


def test_second_build_reuses_and_keys_cover_what_matters(index, trained, dataset):
    store, stored = index
    again, reused, _ = _build(store, trained, "trained", dataset)
    assert reused and again.folder == stored.folder
    spec = get_spec("lenet").preprocessing
    base = base_key("trained", dataset.manifest(), spec)
    assert stored.meta["base"] == base
    assert base_key("other-weights", dataset.manifest(), spec) != base
    assert full_key(base, LAYERS, K) != full_key(base, LAYERS, K + 1)
    assert store.find(base, "relu3", K) is not None
    assert store.find(base, "relu3", K + 1) is None  # a larger k than stored is never served
    assert store.find(base, "fc1", 1) is None


def test_a_cancelled_build_leaves_nothing_to_serve(tmp_path, trained, dataset):
    store = IndexStore(tmp_path)
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        store.build(
            trained, model_name="lenet", weights_sha256="x", spec=get_spec("lenet").preprocessing, dataset=dataset,
            layers=["relu1"], k=3, batch_size=100, should_stop=stop,
        )  # fmt: skip
    assert [p for p in tmp_path.iterdir()] == []
    base = base_key("x", dataset.manifest(), get_spec("lenet").preprocessing)
    assert store.find(base, "relu1", 1) is None


def test_an_unwritable_index_dir_is_a_clear_error(tmp_path, trained, dataset):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = IndexStore(blocker / "index")
    with pytest.raises(IndexUnavailable, match="not writable"):
        _build(store, trained, "y", dataset, layers=["relu1"], k=2)


def test_folder_dataset_labels_manifest_and_unreadable_files(tmp_path, trained):
    import cv2

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / cls / f"{i}.png"), np.full((40, 30, 3), 40 * i + 10, np.uint8))
    (tmp_path / "b" / "broken.png").write_bytes(b"not a png")
    ds = FolderDataset("mine", tmp_path)
    assert ds.classes == ("a", "b") and ds.size == 7
    assert ds.labels().tolist() == [0, 0, 0, 1, 1, 1, 1]
    manifest = ds.manifest()
    store = IndexStore(tmp_path / "index")
    stored, _, figures = _build(store, trained, "z", ds, layers=["relu1", "fc3"], k=4)
    assert figures["skipped"] == 1 and stored.meta["indexed"] == 6
    assert not stored.present[ds.files.index(Path("b/broken.png"))]
    assert -1 not in stored.top("fc3")[1]
    os.utime(tmp_path / "a" / "0.png", ns=(1, 1))
    assert ds.manifest() != manifest  # an edited folder gets a new key: the old index is stale


def test_merge_order_does_not_matter():
    """Per-block candidates merged in any order give the same top-k (what the Ray engine relies on)."""
    g = torch.Generator().manual_seed(0)
    values = torch.randint(0, 5, (3, 40), generator=g).float()  # many ties
    ids = torch.arange(40).expand(3, -1)
    zeros = torch.zeros_like(ids)
    forward, backward = TopK.empty(3, 7), TopK.empty(3, 7)
    for lo in range(0, 40, 8):
        forward.merge(values[:, lo : lo + 8], ids[:, lo : lo + 8], zeros[:, lo : lo + 8], zeros[:, lo : lo + 8])
    for lo in reversed(range(0, 40, 8)):
        backward.merge(values[:, lo : lo + 8], ids[:, lo : lo + 8], zeros[:, lo : lo + 8], zeros[:, lo : lo + 8])
    assert torch.equal(forward.ids, backward.ids) and torch.equal(forward.values, backward.values)
    expected = np.stack([np.lexsort((np.arange(40), -values[c].numpy()))[:7] for c in range(3)])
    np.testing.assert_array_equal(forward.ids.numpy(), expected)


def test_unit_pass_keeps_exactly_the_documented_entries() -> None:
    """unit_pass against its docstring, written out with numpy: the entries that may enter are
    those at least the batch's own k-th value of their unit (ties included; only when the batch
    has more than k images and the floor is not full) and at least the floor (above it with
    ``strict``), channel ascending then position; each with its value (the map's maximum) and
    first-maximum location (row-major; 0 for a linear layer). A batch of at most k images and no
    floor gives the whole table instead. ``floor_full`` None means: look at the floor."""
    g = torch.Generator().manual_seed(5)

    def expected(values: np.ndarray, k: int, floor: np.ndarray | None, strict: bool) -> np.ndarray:
        """(B, C) bool: the entries that may enter."""
        full = floor is not None and bool(np.isfinite(floor).all())
        mask = np.ones(values.shape, dtype=bool)
        if values.shape[0] > k and not full:
            kth = -np.sort(-values, axis=0)[k - 1]  # each unit's k-th largest value of the batch
            mask &= values >= kth
        if floor is not None:
            mask &= values > floor if strict else values >= floor
        return mask

    for spatial in (True, False):
        for batch, k in ((9, 4), (4, 4), (3, 4)):
            shape = (batch, 5, 3, 4) if spatial else (batch, 5)
            output = torch.randint(0, 4, shape, generator=g).float()  # ties everywhere
            values = output.amax(dim=(2, 3)) if spatial else output
            first = output.flatten(2).argmax(2) if spatial else torch.zeros(shape, dtype=torch.int64)
            ys, xs = (first // 4, first % 4) if spatial else (first, first)
            partial = torch.tensor([1.0, -math.inf, 2.0, 3.0, -math.inf])
            full = torch.tensor([1.0, 0.0, 2.0, 3.0, 2.0])
            cases = [(None, False, None), (partial, False, None), (partial, True, False), (full, False, None)]
            cases += [(full, True, True), (full, False, True), (partial, False, False)]
            for floor, strict, floor_full in cases:
                unit = (
                    unit_pass(output, k, floor, strict, floor_full)
                    if strict or floor_full is not None
                    else unit_pass(output, k, floor)  # the defaults: inclusive, look at the floor
                )
                where = f"spatial={spatial} B={batch} k={k} floor={floor} strict={strict} full={floor_full}"
                torch.testing.assert_close(unit.features, output.mean(dim=(2, 3)) if spatial else output)
                assert unit.shape == shape[1:]
                if floor is None and batch <= k:
                    assert unit.table is not None, where  # the table instead of the entries: no entry listed
                    assert all(t.numel() == 0 for t in (unit.channels, unit.positions, unit.values, unit.ys, unit.xs))
                    assert unit.channels.dtype == unit.positions.dtype == torch.int64
                    for got, want in zip(unit.table, (values, ys, xs), strict=True):
                        assert got.dtype == want.dtype and torch.equal(got, want), where
                    continue
                assert unit.table is None, where
                f = None if floor is None else floor.numpy()
                channels, positions = np.nonzero(expected(values.numpy(), k, f, strict).T)
                assert unit.ys.dtype == unit.xs.dtype == torch.int64, where
                np.testing.assert_array_equal(unit.channels.numpy(), channels, err_msg=where)
                np.testing.assert_array_equal(unit.positions.numpy(), positions, err_msg=where)
                np.testing.assert_array_equal(unit.values.numpy(), values.numpy()[positions, channels], err_msg=where)
                np.testing.assert_array_equal(unit.ys.numpy(), ys.numpy()[positions, channels], err_msg=where)
                np.testing.assert_array_equal(unit.xs.numpy(), xs.numpy()[positions, channels], err_msg=where)
    with pytest.raises(InvalidInput, match=r"expected \(B, C, H, W\) or \(B, F\) layer output, got shape \(2, 3, 4\)"):
        unit_pass(torch.zeros(2, 3, 4), 3)


def test_candidates_padded_equals_a_per_unit_table_written_out() -> None:
    """Candidates as a (units, m) block: row u holds unit u's entries in the order given (id
    order), then empty slots (value -inf, id -1, location 0) up to the largest count m; m = 0
    when there is no entry. Grouped or not (several batches' entries concatenated), any count."""

    def written_out(units: list[int], n_units: int) -> dict[str, np.ndarray]:
        per_unit: list[list[int]] = [[] for _ in range(n_units)]
        for j, u in enumerate(units):
            per_unit[u].append(j)
        m = max((len(js) for js in per_unit), default=0)
        block = {
            "values": np.full((n_units, m), -np.inf, dtype=np.float32),
            "ids": np.full((n_units, m), -1),
            "ys": np.zeros((n_units, m), dtype=np.int64),
            "xs": np.zeros((n_units, m), dtype=np.int64),
        }
        for u, js in enumerate(per_unit):
            for slot, j in enumerate(js):
                block["values"][u, slot], block["ids"][u, slot] = 0.5 * j, 100 + j
                block["ys"][u, slot], block["xs"][u, slot] = j % 3, j % 5 + 1
        return block

    g = torch.Generator().manual_seed(4)
    cases = [[], [2], [1, 0], [0, 1], [3, 3], [2, 0, 2, 1, 0, 0], [0, 0, 1, 3, 3, 3]]
    cases += [torch.randint(0, 4, (40,), generator=g).tolist() for _ in range(3)]
    for units in cases:
        j = torch.arange(len(units))
        candidates = Candidates(torch.tensor(units, dtype=torch.int64), 0.5 * j.float(), 100 + j, j % 3, j % 5 + 1)
        block = candidates.padded(4)
        for name, expected in written_out(units, 4).items():
            np.testing.assert_array_equal(getattr(block, name).numpy(), expected, err_msg=f"{units} {name}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.uint8])
def test_crop_field_is_the_image_cut_from_a_zero_padded_copy(dtype: torch.dtype) -> None:
    """Oracle: numpy pads the image with zeros on every side and slices the box, in the image's dtype."""
    image = torch.arange(1, 3 * 6 * 7 + 1).reshape(3, 6, 7).to(dtype)
    pad = 10
    padded = np.pad(image.numpy(), ((0, 0), (pad, pad), (pad, pad)))
    boxes = [Box(1, 2, 4, 5), Box(-2, -3, 3, 2), Box(4, 5, 9, 10), Box(-4, 1, -1, 4), Box(0, 0, 6, 7), Box(2, 8, 5, 11)]
    for box in boxes:
        crop, padding = crop_field(image, box)
        assert crop.dtype == dtype, box
        expected = padded[:, box.y0 + pad : box.y1 + pad, box.x0 + pad : box.x1 + pad]
        np.testing.assert_array_equal(crop.numpy(), expected, err_msg=str(box))
        inside = 0 <= box.y0 and 0 <= box.x0 and box.y1 <= 6 and box.x1 <= 7
        assert padding is (not inside), box


def test_nearest_skips_invalid_rows_and_equals_brute_force_over_the_rest() -> None:
    g = torch.Generator().manual_seed(3)
    features = torch.randn(30, 5, generator=g, dtype=torch.float64).float()
    features[4] = 0.0  # a zero vector: cosine distance 1 from everything
    query = torch.cat([features[:3], torch.randn(2, 5, generator=g)])
    valid = torch.ones(30, dtype=torch.bool)
    valid[[0, 7, 11, 12, 29]] = False
    f, q = features.double().numpy(), query.double().numpy()
    brute = {
        "l2": np.sqrt(((q[:, None, :] - f[None, :, :]) ** 2).sum(2)),
        "cosine": 1 - (q @ f.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(f, axis=1).clip(1e-12)),
    }
    for metric, full in brute.items():
        np.testing.assert_allclose(distances(features, query, metric).numpy(), full, atol=1e-5)
        ids, dist = nearest(features, query, 6, metric, valid)
        keep = np.flatnonzero(valid.numpy())
        order = keep[np.argsort(full[:, keep], axis=1, kind="stable")[:, :6]]
        np.testing.assert_array_equal(ids.numpy(), order)
        np.testing.assert_allclose(dist.numpy(), np.take_along_axis(full, order, 1), atol=1e-5)
    np.testing.assert_allclose(distances(features, query, "cosine")[:, 4].numpy(), 1.0, atol=1e-6)
    # cosine is scale-free: rows and queries far shorter than 1 are at the same distances
    short = distances(features * 1e-3, query * 1e-3, "cosine").numpy()
    np.testing.assert_allclose(short, brute["cosine"], atol=1e-5)
    dup = torch.randint(0, 3, (200, 1), generator=g).float()  # exact ties everywhere: by smaller id
    ids, _ = nearest(dup, dup[:4], 50, "l2")
    ties = np.abs(dup[:4].numpy() - dup.numpy().T)
    np.testing.assert_array_equal(ids.numpy(), np.argsort(ties, axis=1, kind="stable")[:, :50])
    ids, _ = nearest(features, query, 100, "l2")  # k past N: every row, once
    assert ids.shape == (5, 30) and all(sorted(row) == list(range(30)) for row in ids.tolist())
    with pytest.raises(InvalidInput, match="unknown metric 'cos'; valid: cosine, l2"):
        distances(features, query, "cos")
    with pytest.raises(InvalidInput, match=r"expected \(N, F\) and \(Q, F\), got \(30, 5\) and \(5, 4\)"):
        distances(features, query[:, :4], "l2")
    with pytest.raises(InvalidInput, match=r"got \(30, 5\) and \(5,\)"):
        distances(features, query[:, 0], "l2")
    with pytest.raises(InvalidInput, match=r"got \(150,\) and \(5, 5\)"):
        distances(features.flatten(), query, "l2")


def test_batch_top_breaks_ties_by_image_id_and_finds_the_first_maximum():
    g = torch.Generator().manual_seed(1)
    maps = torch.randint(0, 3, (50, 4, 5, 5), generator=g).float()  # ties everywhere, many zeros
    ids = torch.arange(100, 150)
    top = batch_top(maps, ids, 7)
    per_image = maps.flatten(2).amax(2).numpy()  # (B, C)
    for c in range(4):
        order = np.lexsort((np.arange(50), -per_image[:, c]))[:7]
        np.testing.assert_array_equal(top.ids[c].numpy(), order + 100)
        first = maps[order, c].flatten(1).argmax(1).numpy()
        np.testing.assert_array_equal((top.ys[c] * 5 + top.xs[c]).numpy(), first)


def test_the_combined_split_is_train_then_test() -> None:
    registry = DatasetRegistry()
    both, train, test = (registry.get(f"fashion-mnist-{s}") for s in ("all", "train", "test"))
    assert both.size == train.size + test.size == 70_000
    np.testing.assert_array_equal(both.labels(), np.concatenate([train.labels(), test.labels()]))
    for i in (0, 59_999, 60_000, 69_999):
        source, j = (train, i) if i < 60_000 else (test, i - 60_000)
        np.testing.assert_array_equal(both.read([i])[0], source.read([j])[0])
    assert len({both.manifest(), train.manifest(), test.manifest()}) == 3


@pytest.mark.parametrize(
    ("reverse", "layers", "k"),
    [
        (False, ["0", "2"], 6),
        (True, ["0", "2"], 6),
        (False, ["2", "0"], 6),
        (False, ["0", "2"], 12),
        (True, ["0", "2"], 12),
    ],
)
def test_floors_only_save_work(reverse: bool, layers: list[str], k: int) -> None:
    """Batches through index_batch, merged with the floor filter (strict in id order, inclusive
    otherwise), give exactly the top-k of one batch over everything: ids, values and
    first-maximum locations, with ties; for a feature-map layer and a linear one, listed in
    either order; with k = 12 the first batch (10 images, no floor yet) is taken whole."""
    g = torch.Generator().manual_seed(2)
    maps = torch.randint(0, 4, (120, 5, 4, 4), generator=g).float()  # many ties, many zeros
    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Flatten(), torch.nn.Identity())
    ids = torch.arange(120)
    oracles = {"0": batch_top(maps, ids, k), "2": batch_top(maps.flatten(1), ids, k)}
    acc = IndexAccumulator(layers, k, 120)
    starts = list(range(0, 120, 10))
    for lo in reversed(starts) if reverse else starts:
        chunk = ids[lo : lo + 10]
        strict = acc.max_id < int(chunk.min())
        acc.add(index_batch(model, maps[lo : lo + 10], chunk, layers, k, acc.floor(), strict))
    result = acc.result()
    for layer, oracle in oracles.items():
        got = result[layer].top
        for name in ("ids", "values", "ys", "xs"):
            assert torch.equal(getattr(got, name), getattr(oracle, name)), (layer, name)
    torch.testing.assert_close(result["0"].features, maps.mean(dim=(2, 3)))
    torch.testing.assert_close(result["2"].features, maps.flatten(1))


@pytest.mark.parametrize(("side", "pool"), [(8, 2), (7, 2), (9, 3)])
def test_maxima_taken_from_a_tiling_pool_equal_the_maps_own(side: int, pool: int) -> None:
    """A map followed by a max pool that tiles it (8 px, 9 px) takes its maxima from the pool's
    output; one it does not tile (7 px) reduces its own. Both give the top-k of the map itself."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(pool))
    x = torch.rand(40, 2, side, side)
    ids = torch.arange(40)
    with torch.no_grad():
        relu = model[1](model[0](x))
        pooled = model[2](relu)
    acc = IndexAccumulator(["1", "2"], 5, 40)
    for lo in range(0, 40, 8):
        acc.add(index_batch(model, x[lo : lo + 8], ids[lo : lo + 8], ["1", "2"], 5, acc.floor(), lo > 0))
    result = acc.result()
    for layer, maps in (("1", relu), ("2", pooled)):
        oracle = batch_top(maps, ids, 5)
        for name in ("ids", "values", "ys", "xs"):
            assert torch.equal(getattr(result[layer].top, name), getattr(oracle, name)), (layer, name)


def test_the_documented_default_batch_is_the_one_resolved() -> None:
    doc = FIELD_DOCS["interp.v1.BuildIndexParams.batch_size"]
    assert f"default {default_batch(28)} for 28-px inputs" in doc and f"{default_batch(224)} at 224 px" in doc


def test_memory_growth_is_the_builds_own_not_an_earlier_peak(tmp_path, trained, dataset):
    from server.stores.index import peak_rss_mb, rss_mb

    above = peak_rss_mb() - rss_mb()  # how far the process's peak (earlier tests' work) is above it now
    if above < 600:  # make it so: touch 700 MiB and free them (the peak then sits >= 700 MiB above)
        block = np.ones(700 * 2**20 // 4, np.float32)
        del block
    assert peak_rss_mb() - rss_mb() > 500
    _, _, figures = _build(IndexStore(tmp_path), trained, "after-a-peak", dataset, layers=["relu4"])
    assert 0 <= figures["peak_rss_growth_mb"] < 300  # it reported the distance to the earlier peak
