"""interp.embedding against independent oracles: numpy SVD / scikit-learn PCA, openTSNE called directly,
scikit-learn's k-NN; determinism, progress, cancellation, placement, pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks._metrics import neighbour_accuracy
from interp import embedding as emb
from interp.errors import Cancelled, InvalidInput
from interp.pca import fit_pca
from tests.conftest import require_fashion_mnist

SMALL = emb.EmbeddingParams(perplexity=20.0, iterations=40, early_iterations=30, seed=3)


@pytest.fixture(scope="module")
def lenet_relu4() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The trained LeNet's relu4 features of the first 800 test images, through the index's own path."""
    require_fashion_mnist()
    from interp.dataset.index import build_index
    from models.dataset_registry import DatasetRegistry
    from models.hub import ModelHub
    from models.weights import WeightsOptions
    from server.stores.datasets import iter_batches

    torch.set_num_threads(1)
    model = ModelHub(["lenet"], WeightsOptions()).get("lenet")
    dataset = DatasetRegistry().get("fashion-mnist-test")
    index, _ = build_index(
        model.require_ready(), iter_batches(dataset, model.spec.preprocessing, 500), ["relu4"], 1, dataset.size
    )
    images = dataset.arrays()[0][:800]
    return index["relu4"].features.numpy()[:800], dataset.labels()[:800], images


def test_pca_equals_numpy_svd_and_sklearn_up_to_sign() -> None:
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12)) + rng.normal(size=12)
    pca = fit_pca(x, 5)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    for k in range(5):
        assert abs(abs(float(pca.components[k] @ vt[k])) - 1.0) < 1e-9
    np.testing.assert_allclose(pca.explained_variance_ratio, (s**2 / (s**2).sum())[:5], rtol=1e-9)
    ref = PCA(n_components=5, svd_solver="full").fit(x)
    ours, theirs = pca.project(x), ref.transform(x)
    signs = np.sign((ours * theirs).sum(axis=0))
    np.testing.assert_allclose(ours, theirs * signs, atol=1e-8)
    np.testing.assert_allclose(pca.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-9)


def test_pca_map_of_real_features(lenet_relu4) -> None:
    from sklearn.decomposition import PCA

    features, _, _ = lenet_relu4
    events: list = []
    m = emb.embed(features, "pca", emb.EmbeddingParams(), on_step=events.append)
    theirs = PCA(n_components=2, svd_solver="full").fit_transform(features.astype(np.float64))
    signs = np.sign((m.coordinates * theirs).sum(axis=0))
    np.testing.assert_allclose(m.coordinates, theirs * signs, atol=1e-3, rtol=1e-4)
    assert m.coordinates.dtype == np.float32 and np.isnan(m.kl_divergence) and [e.stage for e in events] == ["pca"]


def test_tsne_is_opentsne_with_the_same_parameters(lenet_relu4) -> None:
    import openTSNE

    features, _, _ = lenet_relu4
    x = features[:400]
    m = emb.embed(x, "tsne", SMALL, threads=1)
    reduced = fit_pca(x, SMALL.pca_dims).project(x)
    direct = np.asarray(
        openTSNE.TSNE(
            perplexity=SMALL.perplexity,
            n_iter=SMALL.iterations,
            early_exaggeration_iter=SMALL.early_iterations,
            n_jobs=1,
            random_state=SMALL.seed,
        ).fit(reduced)
    )
    direct -= (direct.max(axis=0) + direct.min(axis=0)) / 2
    np.testing.assert_allclose(m.coordinates, direct, atol=1e-4)


def test_same_request_same_seed_identical_coordinates_and_progress(lenet_relu4) -> None:
    features, _, _ = lenet_relu4
    events: list = []
    a = emb.embed(features[:400], "tsne", SMALL, on_step=events.append)
    b = emb.embed(features[:400], "tsne", SMALL)
    assert np.array_equal(a.coordinates, b.coordinates)
    c = emb.embed(features[:400], "tsne", emb.EmbeddingParams(**{**SMALL.__dict__, "seed": 4}))
    assert not np.array_equal(a.coordinates, c.coordinates)
    stages = [e.stage for e in events]
    assert stages[:2] == ["pca", "affinities"] and "early exaggeration" in stages and stages[-1] == "optimization"
    iterations = [e.step for e in events if e.stage in ("early exaggeration", "optimization")]
    assert iterations == sorted(iterations) and iterations[-1] == 70 and events[-1].total_steps == 70
    assert iterations[:3] == [10, 20, 30]  # every REPORT_EVERY iterations, counted over both phases
    kl = [e.objective for e in events if e.stage == "optimization"]
    assert all(np.isfinite(kl)) and kl[-1] == pytest.approx(a.kl_divergence, rel=0.05) and kl[-1] > 0


def test_cancellation_mid_optimization_raises(lenet_relu4) -> None:
    features, _, _ = lenet_relu4
    seen: list = []

    def stop() -> bool:
        return any(e.stage == "optimization" for e in seen)

    with pytest.raises(Cancelled, match="iteration"):
        emb.embed(features[:400], "tsne", SMALL, on_step=seen.append, should_stop=stop)
    assert max(e.step for e in seen) < 70


def test_bad_parameters_are_refused() -> None:
    x = np.random.default_rng(0).normal(size=(30, 5))
    with pytest.raises(InvalidInput, match="below N / 3"):
        emb.embed(x, "tsne", emb.EmbeddingParams(perplexity=10))
    with pytest.raises(InvalidInput, match="at least 4 points"):
        emb.embed(x[:3], "tsne", emb.EmbeddingParams(perplexity=0.5))
    with pytest.raises(InvalidInput, match="unknown embedding method"):
        emb.embed(x, "umap", emb.EmbeddingParams())
    with pytest.raises(InvalidInput, match="NaN"):
        emb.embed(np.full((10, 2), np.nan), "pca", emb.EmbeddingParams())
    assert emb.min_points(30) == 91


def test_placed_dataset_images_land_at_their_own_position(lenet_relu4) -> None:
    """The issue's bar: within the 1st percentile of inter-point distances of the image's own point."""
    features, _, _ = lenet_relu4
    m = emb.embed(features[:600], "tsne", emb.EmbeddingParams(iterations=150, early_iterations=100))
    queries = [5, 77, 301, 450]
    placed = emb.place(m, features[queries])
    points = m.coordinates.astype(np.float64)
    pairwise = np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1))[np.triu_indices(len(points), 1)]
    p1 = np.percentile(pairwise, 1)
    for row, q in enumerate(queries):
        assert np.linalg.norm(placed.coordinates[row] - points[q]) <= p1
    assert placed.neighbor_ids.shape == (4, emb.PLACE_NEIGHBORS)
    before = m.coordinates.copy()
    emb.place(m, features[queries])
    np.testing.assert_allclose(m.coordinates, before)  # the cached map does not move


def test_pca_placement_is_the_projection(lenet_relu4) -> None:
    features, _, _ = lenet_relu4
    m = emb.embed(features, "pca", emb.EmbeddingParams())
    placed = emb.place(m, features[[3, 9]])
    np.testing.assert_allclose(placed.coordinates, m.coordinates[[3, 9]], atol=1e-5)
    assert list(placed.neighbor_ids[:, 0]) == [3, 9]


def test_neighbour_accuracy_matches_sklearn_knn() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 400)
    coords = rng.normal(size=(400, 2)) + labels[:, None] * 1.5
    ours = neighbour_accuracy(coords, labels, k=10, folds=5, seed=0)
    order = np.random.default_rng(0).permutation(400)
    correct = 0
    for f in range(5):
        test = order[f::5]
        train = np.setdiff1d(order, test)
        knn = KNeighborsClassifier(n_neighbors=10).fit(coords[train], labels[train])
        correct += int((knn.predict(coords[test]) == labels[test]).sum())
    assert ours == pytest.approx(correct / 400, abs=0.01)


def test_pictures(lenet_relu4) -> None:
    features, labels, images = lenet_relu4
    m = emb.embed(features[:300], "pca", emb.EmbeddingParams())
    classes = tuple(f"class{i}" for i in range(10))
    scatter = emb.scatter_image(m.coordinates, labels[:300].astype(np.int64), classes, size=400)
    assert scatter.shape == (400, 400 + 30 + 11 * 6, 3) and scatter.dtype == np.uint8
    for label in np.unique(labels[:300]):  # every class's colour is drawn (points and legend)
        colour = np.array(emb.class_colour(int(label)), dtype=np.uint8)
        assert (scatter[:, :400] == colour).all(axis=2).sum() > 0
        assert (scatter[:, 400:] == colour).all(axis=2).sum() > 0
    atlas = emb.atlas_image(m.coordinates, images[:300], size=280)
    assert atlas.shape == (280, 280, 3) and (atlas < 255).any()
    tiles = emb.sprite(images[:7], 3)
    assert tiles.shape == (3 * 28, 3 * 28)
    np.testing.assert_array_equal(tiles[28:56, 0:28], images[3])  # thumbnail i at row i // 3, column i % 3
    np.testing.assert_array_equal(tiles[56:84, 28:56], 0)  # past the last thumbnail: empty


def _mapped(coords: np.ndarray, size: int, margin: int) -> np.ndarray:
    """The pictures' stated mapping, written out: the bounding box centred in the square less the
    margin, one scale for both axes, y up. Returns rounded (x, y) pixel positions."""
    lo, hi = coords.min(0), coords.max(0)
    span = float(max(hi - lo)) or 1.0
    xy = (coords - (lo + hi) / 2) * (size - 2 * margin) / span + size / 2
    xy[:, 1] = size - xy[:, 1]
    return np.round(xy)


def test_pixel_mapping_and_atlas_equal_a_written_out_oracle() -> None:
    # Off-centre coordinates whose y extent (8) is the larger one: the span is hi - lo of y.
    coords = np.array([[10.0, 50.0], [11.0, 58.0], [10.5, 54.0], [12.0, 51.0]])
    px = emb._to_pixels(coords, 200, 10)
    assert px.dtype.kind == "i"  # integer pixel positions
    np.testing.assert_array_equal(px, _mapped(coords, 200, 10))
    rgb = np.random.default_rng(5).integers(0, 255, (4, 10, 10, 3), dtype=np.uint8)
    gray = rgb[..., 0]
    cells = [(int(y // 10), int(x // 10)) for x, y in _mapped(coords, 200, 10)]  # margin = thumbnail side
    assert len(set(cells)) == 4
    for thumbnails, tiles in ((rgb, rgb), (gray, np.repeat(gray[..., None], 3, axis=3))):
        expected = np.full((200, 200, 3), 255, dtype=np.uint8)  # white, thumbnail i in its cell, nothing else
        for i, (row, col) in enumerate(cells):
            expected[row * 10 : row * 10 + 10, col * 10 : col * 10 + 10] = tiles[i]
        np.testing.assert_array_equal(emb.atlas_image(coords, thumbnails, size=200), expected)
    # Two points in one cell: the one nearer the cell's centre (105, 105) is shown: A at pixel
    # (101, 106), not B at (100, 105); the corners land in the last column and the last row.
    shared = np.array([[0.0, 0.0], [10.0, 10.0], [5 + 1 / 18, 5 - 6 / 18], [5.0, 5 - 5 / 18]])
    np.testing.assert_array_equal(emb._to_pixels(shared, 200, 10), [[10, 190], [190, 10], [101, 106], [100, 105]])
    expected = np.full((200, 200, 3), 255, dtype=np.uint8)
    for i, (row, col) in enumerate([(19, 1), (1, 19), (10, 10)]):
        expected[row * 10 : row * 10 + 10, col * 10 : col * 10 + 10] = rgb[i]
    np.testing.assert_array_equal(emb.atlas_image(shared, rgb, size=200), expected)
    one = emb.atlas_image(coords[:1], gray[:1])  # the default size; a single thumbnail is a picture
    assert one.shape == (1600, 1600, 3)
    assert emb.atlas_image(coords[:1], gray[:1, :1, :1]).shape == (1600, 1600, 3)  # 1-pixel cells: the size itself
    np.testing.assert_array_equal(one[800:810, 800:810, 0], gray[0])  # one point: the centre cell
    with pytest.raises(InvalidInput, match="expected at most 4 thumbnails and at least one, got 5"):
        emb.atlas_image(coords, np.concatenate([gray, gray[:1]]))
    with pytest.raises(InvalidInput, match="expected at most 4 thumbnails and at least one, got 0"):
        emb.atlas_image(coords, gray[:0])


def test_sprite_tiles_rgb_thumbnails_row_major_in_as_many_rows_as_needed() -> None:
    rgb = np.random.default_rng(6).integers(1, 255, (5, 4, 3, 3), dtype=np.uint8)
    tiles = emb.sprite(rgb, 2)
    assert tiles.shape == (3 * 4, 2 * 3, 3)
    for i in range(5):
        r, c = divmod(i, 2)
        np.testing.assert_array_equal(tiles[r * 4 : r * 4 + 4, c * 3 : c * 3 + 3], rgb[i])
    np.testing.assert_array_equal(tiles[8:12, 3:6], 0)
    assert emb.sprite(rgb[:3, ..., 0], 3).shape == (4, 9)  # one row when the thumbnails fit in one


def _scatter_oracle(
    coords: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], size: int, title: str, marks: np.ndarray
) -> np.ndarray:
    """The scatter's stated layout, written out with OpenCV's primitives: a white square of
    ``size`` plus a legend 30 + 11 x (longest name) wide (4 characters when there is no class);
    the points and marks placed by the written-out mapping of their common bounding box (margin
    12); filled anti-aliased discs of radius 2 (1 past 5,000 points) in the class colour; each
    mark a black ring of radius 7 and width 2 with a 10-pixel cross; the legend one row of 26
    pixels per class present in ascending order from y = 30 (a disc of radius 7 at x = size + 10,
    6 above the baseline, the name at x = size + 22, font scale 0.6); the title at (8, 22), font
    scale 0.6. The points here never
    overlap, so their drawing order does not matter."""
    import cv2

    present = sorted(set(labels.tolist()))
    names = [classes[v] if 0 <= v < len(classes) else ("unlabelled" if v < 0 else str(v)) for v in present]
    width = 30 + 11 * (max(len(name) for name in names) if names else 4)
    image = np.full((size, size + width, 3), 255, dtype=np.uint8)
    xy = _mapped(np.concatenate([coords, marks]), size, 12).astype(int)
    radius = 1 if len(coords) > 5000 else 2
    for (x, y), label in zip(xy[: len(coords)], labels, strict=True):
        cv2.circle(image, (int(x), int(y)), radius, emb.class_colour(int(label)), -1, cv2.LINE_AA)
    for x, y in xy[len(coords) :]:
        cv2.circle(image, (int(x), int(y)), 7, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.drawMarker(image, (int(x), int(y)), (0, 0, 0), cv2.MARKER_CROSS, 10, 1)
    for row, (value, name) in enumerate(zip(present, names, strict=True)):
        baseline = 30 + 26 * row
        cv2.circle(image, (size + 10, baseline - 6), 7, emb.class_colour(value), -1, cv2.LINE_AA)
        cv2.putText(image, name, (size + 22, baseline), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    if title:
        cv2.putText(image, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def test_scatter_equals_its_written_out_layout_and_refuses_bad_shapes() -> None:
    classes = ("t-shirt", "trouser", "pullover")
    # Points on a grid (no two discs touch), labels past the classes (named by number, a darker
    # shade of the palette) and below them ("unlabelled"); marks as an (M, 2) array and as one (x, y).
    grid = np.stack(np.meshgrid(np.arange(6.0), np.arange(5.0)), axis=-1).reshape(-1, 2) * [3.0, 2.0] + [7.0, -4.0]
    labels = np.arange(len(grid)) % 15 - 1  # -1 .. 13
    for marks in (None, np.array([[8.5, -3.0], [20.0, 9.0]]), [22.0, 3.0]):
        extra = np.zeros((0, 2)) if marks is None else np.asarray(marks, dtype=np.float64).reshape(-1, 2)
        for size, title in ((300, ""), (240, "relu4 of lenet")):
            got = emb.scatter_image(grid, labels, classes, size=size, title=title, marks=marks)
            np.testing.assert_array_equal(got, _scatter_oracle(grid, labels, classes, size, title, extra))
    default = emb.scatter_image(grid[:4], labels[:4], classes)  # size 800, no title
    np.testing.assert_array_equal(default, _scatter_oracle(grid[:4], labels[:4], classes, 800, "", np.zeros((0, 2))))
    # No class list: 0 is named "0"; no point at all, only marks: the legend's default width.
    np.testing.assert_array_equal(
        emb.scatter_image(grid[:3], np.array([0, -1, 2]), (), size=100),
        _scatter_oracle(grid[:3], np.array([0, -1, 2]), (), 100, "", np.zeros((0, 2))),
    )
    marks_only = np.array([[0.0, 0.0], [3.0, 1.0]])
    np.testing.assert_array_equal(
        emb.scatter_image(np.zeros((0, 2)), np.zeros(0, dtype=np.int64), classes, size=100, marks=marks_only),
        _scatter_oracle(np.zeros((0, 2)), np.zeros(0, dtype=np.int64), classes, 100, "", marks_only),
    )
    # Discs of radius 2 up to 5,000 points, 1 past: a 71 x 71 grid at 11-pixel spacing.
    big = np.stack(np.meshgrid(np.arange(71.0), np.arange(71.0)), axis=-1).reshape(-1, 2)
    for n in (5000, 5001):
        got = emb.scatter_image(big[:n], np.arange(n) % 10, classes, size=800)
        expected = _scatter_oracle(big[:n], np.arange(n) % 10, classes, 800, "", np.zeros((0, 2)))
        np.testing.assert_array_equal(got, expected)
    # Overlapping points of many classes: the drawing order is fixed, the same picture every call.
    piled = np.repeat(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), 30, axis=0)
    piled_labels = np.tile(np.arange(30), 3)
    first = emb.scatter_image(piled, piled_labels, classes, size=60)
    np.testing.assert_array_equal(first, emb.scatter_image(piled, piled_labels, classes, size=60))
    message = r"expected \(N, 2\) coordinates and \(N,\) labels, got \(4, 3\) and \(4,\)"
    with pytest.raises(InvalidInput, match=message):
        emb.scatter_image(np.zeros((4, 3)), np.zeros(4, dtype=np.int64), classes)
    for coords, labels_ in (
        (np.zeros(4), np.zeros(4, dtype=np.int64)),
        (np.zeros((4, 2, 1)), np.zeros(4, dtype=np.int64)),
        (np.zeros((4, 2)), np.zeros(3, dtype=np.int64)),
        (np.zeros((2, 2)), np.zeros(3, dtype=np.int64)),
    ):
        with pytest.raises(InvalidInput, match="expected"):
            emb.scatter_image(coords, labels_, classes)
