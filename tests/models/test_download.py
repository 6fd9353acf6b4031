"""Downloading weights (models/download.py through the hub): a mirror on 127.0.0.1, never the network.

The test model ``tiny-weights`` is registered with a weights record naming the file the mirror
serves (tests/support/weights_mirror.py). An unreachable mirror is a closed local port; a slow name lookup
is a stand-in getaddrinfo; what the tests check is the bound the code passes down.
"""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from models import download
from models.download import DownloadFailed, NetworkBounds, download_file
from models.errors import WeightsError
from models.hub import ModelHub
from models.loaded import LOADING, READY, UNAVAILABLE
from models.weights import WeightsOptions
from tests.support.weights_mirror import (
    TINY,
    ConnectSpy,
    Mirror,
    closed_port_url,
    mirror_serving,
    register_tiny,
    tiny_file_bytes,
)

DATA = tiny_file_bytes(seed=0)
SHA256 = hashlib.sha256(DATA).hexdigest()
PART = re.compile(r"downloading, [1-9]\d? % \(0\.\d of 0\.3 MB from http://127\.0\.0\.1:\d+/tiny-weights-")


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    return tmp_path / "hub"


def options_for(hub_dir: Path, url_base: str, **changes: object) -> WeightsOptions:
    return WeightsOptions(hub_dir=hub_dir, download=True, url_base=url_base, **changes)  # type: ignore[arg-type]


def leftovers(directory: Path) -> list[str]:
    """Files in the hub dir other than lock files: partial downloads would show here."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock"))


def test_a_mirror_download_becomes_ready_and_pretrained(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    spec = register_tiny(monkeypatch, DATA)
    name = spec.weights.canonical_name
    with mirror_serving({f"/{name}": DATA}) as mirror, caplog.at_level(logging.INFO, logger="models.download"):
        mirror.pause_at = len(DATA) // 2
        hub = ModelHub([TINY], options_for(hub_dir, mirror.url + "/"))
        model = hub.get(TINY)
        assert mirror.paused.wait(30)
        deadline = time.monotonic() + 30
        while not PART.match(model.reason) and time.monotonic() < deadline:
            time.sleep(0.02)  # the client has read whole chunks of the first half
        assert model.status == LOADING and PART.match(model.reason), model.reason
        assert leftovers(hub_dir) and all(n.endswith(".partial") for n in leftovers(hub_dir))
        mirror.resume.set()
        assert hub.wait(30)
    assert (model.status, model.pretrained, model.weights.source) == (READY, True, "download")
    assert (model.weights.sha256, model.weights.path) == (SHA256, str(hub_dir / name))
    assert leftovers(hub_dir) == [name] and (hub_dir / name).read_bytes() == DATA
    assert dict(mirror.requests) == {f"/{name}": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert any("MB/s ETA" in line and "[" in line for line in lines), lines  # the progress bar
    assert any("downloaded 0.3 MB" in line and SHA256 in line for line in lines), lines
    # The next start finds it in the hub cache: no second transfer.
    again = ModelHub([TINY], options_for(hub_dir, mirror.url)).get(TINY)
    assert (again.status, again.weights.source) == (READY, "hub_cache")
    assert sum(mirror.requests.values()) == 1


@pytest.mark.parametrize("random", [False, True])
def test_a_wrong_checksum_is_refused_never_served_never_random(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch, random: bool
) -> None:
    spec = register_tiny(monkeypatch, DATA)
    name = spec.weights.canonical_name
    with mirror_serving({f"/{name}": tiny_file_bytes(seed=1)}) as mirror:  # other bytes under that name
        hub = ModelHub([TINY], options_for(hub_dir, mirror.url, random=random))
        assert hub.wait(30)
    model = hub.get(TINY)
    assert (model.status, model.module, model.weights.source) == (UNAVAILABLE, None, "")
    assert model.reason.startswith("weights refused:") and f"expected a hash starting with {SHA256[:8]}" in model.reason
    assert leftovers(hub_dir) == []


def test_a_pinned_full_sha256_refuses_a_file_whose_prefix_matches(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = register_tiny(monkeypatch, DATA)
    name = spec.weights.canonical_name
    wrong_tail = SHA256[:8] + ("0" if SHA256[8] != "0" else "1") + SHA256[9:]
    with mirror_serving({f"/{name}": DATA}) as mirror:
        pinned = ModelHub([TINY], options_for(hub_dir, mirror.url, sha256={TINY: wrong_tail}))
        assert pinned.wait(30)
        assert pinned.get(TINY).status == UNAVAILABLE and f"expected {wrong_tail}" in pinned.get(TINY).reason
        assert leftovers(hub_dir) == []
        right = ModelHub([TINY], options_for(hub_dir, mirror.url, sha256={TINY: SHA256.upper()}))
        assert right.wait(30) and right.get(TINY).weights.source == "download"
    contradicting = "f" * 64 if not SHA256.startswith("f") else "e" * 64
    hub = ModelHub([TINY], options_for(hub_dir, mirror.url, sha256={TINY: contradicting}))
    assert hub.get(TINY).status == UNAVAILABLE and "contradicts the checksum prefix" in hub.get(TINY).reason


def test_a_truncated_transfer_leaves_no_file(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = register_tiny(monkeypatch, DATA)
    with mirror_serving({f"/{spec.weights.canonical_name}": DATA}) as mirror:
        mirror.truncate_at = len(DATA) // 3
        hub = ModelHub([TINY], options_for(hub_dir, mirror.url))
        assert hub.wait(30)
    model = hub.get(TINY)
    assert model.status == UNAVAILABLE
    assert f"transfer ended after {len(DATA) // 3} of {len(DATA)} bytes" in model.reason
    assert "--weights-url-base" in model.reason and "--random-weights" in model.reason  # every way to provide them
    assert leftovers(hub_dir) == []


def test_an_unreachable_mirror_fails_with_the_bounds_passed_down(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_tiny(monkeypatch, DATA)
    spy = ConnectSpy().install(monkeypatch)
    url = closed_port_url()
    bounds = NetworkBounds(lookup_s=1.25, connect_s=0.75, read_s=9.0)
    hub = ModelHub([TINY], options_for(hub_dir, url, bounds=bounds))
    assert hub.wait(30)
    model = hub.get(TINY)
    assert model.status == UNAVAILABLE and "cannot connect to 127.0.0.1" in model.reason, model.reason
    assert "connect timeout 0.75 s" in model.reason
    assert spy.lookup_bounds == [1.25] and spy.connect_timeouts == [0.75]
    assert leftovers(hub_dir) == []


def test_the_default_bounds_are_seconds_not_the_os_defaults() -> None:
    assert NetworkBounds() == NetworkBounds(lookup_s=5.0, connect_s=5.0, read_s=30.0)
    assert WeightsOptions().bounds == NetworkBounds()


def test_a_name_lookup_that_hangs_is_abandoned_at_its_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real = socket.getaddrinfo

    def hanging(host: str, *args: object, **kwargs: object) -> object:
        if host == "mirror.test":
            release.wait(60)  # a resolver that never answers in time
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(download.socket, "getaddrinfo", hanging)
    spy = ConnectSpy().install(monkeypatch)
    try:
        with pytest.raises(DownloadFailed, match="name lookup of mirror.test did not finish within 0.2 s"):
            download_file("http://mirror.test/x.pth", tmp_path / "x.pth", "", bounds=NetworkBounds(lookup_s=0.2))
    finally:
        release.set()
    assert spy.lookup_bounds == [0.2] and spy.connect_timeouts == []
    assert not (tmp_path / "x.pth").exists()


def test_no_download_never_opens_a_connection(hub_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = register_tiny(monkeypatch, DATA)
    with mirror_serving({f"/{spec.weights.canonical_name}": DATA}) as mirror:
        hub = ModelHub([TINY], WeightsOptions(hub_dir=hub_dir, download=False, url_base=mirror.url))
        model = hub.get(TINY)
        assert model.status == UNAVAILABLE and "downloads are off (--no-download" in model.reason
    assert mirror.connections == 0 and not mirror.requests


def test_two_downloads_into_one_cache_transfer_once(hub_dir: Path) -> None:
    """Two processes sharing a hub cache: the lock makes the second wait, then find the file."""
    name = f"tiny-weights-{SHA256[:8]}.pth"
    results: list[bool | Exception] = []
    reports: list[str] = []

    def fetch() -> None:
        try:
            results.append(download_file(f"{mirror.url}/{name}", hub_dir / name, SHA256[:8], report=reports.append))
        except Exception as exc:  # noqa: BLE001  (the assertion below shows it)
            results.append(exc)

    with mirror_serving({f"/{name}": DATA}) as mirror:
        mirror.pause_at = 1000
        first = threading.Thread(target=fetch)
        first.start()
        assert mirror.paused.wait(30)
        second = threading.Thread(target=fetch)  # flock: separate open files conflict, as between processes
        second.start()
        deadline = time.monotonic() + 30
        while not any(r.startswith("waiting for another process") for r in reports) and time.monotonic() < deadline:
            time.sleep(0.02)
        mirror.resume.set()
        first.join(30)
        second.join(30)
    assert sorted(results, key=str) == [False, True]  # one transferred, one found it in place
    assert dict(mirror.requests) == {f"/{name}": 1}
    assert leftovers(hub_dir) == [name] and hashlib.sha256((hub_dir / name).read_bytes()).hexdigest() == SHA256


def test_a_refused_download_raises_weights_error_and_keeps_an_existing_file_out(tmp_path: Path) -> None:
    name = "f-00000000.pth"
    with Mirror() as mirror:
        mirror.files[f"/{name}"] = DATA
        with pytest.raises(WeightsError, match="refused: its sha256 is"):
            download_file(f"{mirror.url}/{name}", tmp_path / name, "00000000")
    assert list(tmp_path.iterdir()) == [tmp_path / f"{name}.lock"]


def test_models_fetch_fills_a_hub_cache_from_a_mirror(
    hub_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from models import fetch

    spec = register_tiny(monkeypatch, DATA)
    name = spec.weights.canonical_name
    with mirror_serving({f"/{name}": DATA}) as mirror:
        argv = [TINY, "--hub-dir", str(hub_dir), "--weights-url-base", mirror.url]
        assert fetch.main([*argv, "--weights-sha256", f"{TINY}={SHA256}"]) == 0
        assert f"{TINY}: download {hub_dir / name} sha256={SHA256}" in capsys.readouterr().out
        assert fetch.main([*argv, "--no-download"]) == 0  # verifies what is there, no transfer
        assert f"{TINY}: hub_cache" in capsys.readouterr().out
        (hub_dir / name).unlink()
        assert fetch.main([*argv, "--no-download"]) == 1
        assert "downloads are off" in capsys.readouterr().err
    assert dict(mirror.requests) == {f"/{name}": 1}


def test_a_cache_that_cannot_be_written_is_a_download_failure(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    with Mirror() as mirror:
        mirror.files["/w.pth"] = DATA
        with pytest.raises(DownloadFailed, match="cannot download into .*a-file/hub"):
            download_file(f"{mirror.url}/w.pth", tmp_path / "a-file" / "hub" / "w.pth", "")
    assert mirror.connections == 0
