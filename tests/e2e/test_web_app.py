"""The explorer over a real LeNet server, through HTTP: headers, errors, the guards, the caches,
"copy as Python" snippets that reproduce what a page shows, and the torch-free packaging."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.e2e.web_harness import WebServer, request, sneaker_png, start_service

ROOT = Path(__file__).resolve().parents[2]
CSRF = {"X-Interp-Web": "1"}


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[str]:
    server, target = start_service(tmp_path_factory.mktemp("index"))
    yield target
    server.stop(grace=None)


def _web(target: str, **settings) -> WebServer:
    from web import WebSettings, create_app

    return WebServer(create_app(WebSettings(server=target, **settings)))


@pytest.fixture(scope="module")
def web(service) -> Iterator[str]:
    server = _web(service, max_upload_bytes=64 * 1024, upload_cache=2)
    yield server.url
    server.stop()


def _events(body: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in body.decode().split("\n\n") if line.startswith("data: ")]


def _png(data_url: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert data_url.startswith(prefix)
    return base64.b64decode(data_url[len(prefix) :])


def test_importing_web_leaves_torch_out() -> None:
    code = (
        "import sys, web, web.app, web.cli, web.api.lab\n"
        "print(sorted(m for m in ('torch', 'cv2', 'captum', 'server', 'interp') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_web_extra_does_not_pull_torch() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["interp-web"] == "web.cli:main"
    todo = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["web"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo += [Requirement(line) for line in metadata.distribution(name).requires or []]
    assert {"starlette", "uvicorn", "grpcio", "numpy"} <= seen
    assert not seen & {"torch", "torchvision", "captum", "opencv-python-headless", "triton"}, sorted(seen)


def test_every_answer_carries_a_strict_csp(web) -> None:
    for path in ("/", "/lab", "/models/lenet", "/api/models", "/static/js/common.js", "/api/models/nope"):
        reply = request(web + path)
        csp = reply.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp, path
        assert "frame-ancestors 'none'" in csp and reply.headers["x-content-type-options"] == "nosniff"
    assert request(web + "/static/js/common.js").headers["content-type"].startswith("text/javascript")


def test_pages_load_nothing_from_elsewhere() -> None:
    static = ROOT / "web" / "static"
    for path in static.rglob("*"):
        if path.suffix in (".html", ".js", ".css"):
            text = path.read_text()
            assert "http://" not in text and "https://" not in text and "//cdn" not in text, path
            assert "innerHTML" not in text and "<script>" not in text and "style=" not in text, path


def test_without_a_token_only_loopback_host_names_are_answered(web) -> None:
    # a DNS-rebinding page reaches 127.0.0.1 under its own name: its Host header gives it away
    rebound = request(web + "/api/models", headers={"Host": "attacker.example"})
    assert rebound.status == 421 and "attacker.example" in rebound.json()["message"]
    port = web.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert request(web + "/api/models", headers={"Host": host}).status == 200, host


def test_service_errors_are_readable_json(web) -> None:
    reply = request(web + "/api/models/nope")
    assert reply.status == 404
    body = reply.json()
    assert body["code"] == "NOT_FOUND" and "nope" in body["message"] and "lenet" in body["message"]
    layer = request(web + "/api/models/lenet/layers/nope").json()
    assert layer["code"] == "NOT_FOUND" and layer["field"] == "layer" and "relu2" in layer["message"]
    page = request(web + "/api/models/lenet/layers/relu2?page=5")
    assert page.status == 400 and page.json()["field"] == "page"


def test_models_and_layer_strip(web) -> None:
    models = request(web + "/api/models").json()
    (lenet,) = models["models"]
    assert lenet["status"] == "READY" and lenet["pretrained"] and len(lenet["weights"]["sha256"]) == 64
    assert "/" not in lenet["weights"]["file"]  # no server paths reach a page
    strip = request(web + "/api/models/lenet").json()
    conv2 = next(layer for layer in strip["layers"] if layer["name"] == "conv2")
    assert conv2["output_shape"] == [16, 10, 10] and conv2["receptive_field"]["size"] == 14
    assert conv2["parameters"] == 16 * 6 * 25 + 16
    assert strip["kernels"]["layer"] == "conv1" and _png(strip["kernels"]["png"]).startswith(b"\x89PNG")


def test_state_changing_requests_need_the_csrf_header_and_this_origin(web) -> None:
    png = sneaker_png()
    assert request(web + "/api/lab/upload", method="POST", data=png).status == 403
    foreign = {**CSRF, "Origin": "https://evil.example"}
    assert request(web + "/api/lab/upload", method="POST", data=png, headers=foreign).status == 403
    cross = {**CSRF, "Sec-Fetch-Site": "cross-site"}
    assert request(web + "/api/lab/upload", method="POST", data=png, headers=cross).status == 403
    same = {**CSRF, "Origin": web, "Sec-Fetch-Site": "same-origin"}
    reply = request(web + "/api/lab/upload", method="POST", data=png, headers=same)
    assert reply.status == 200 and len(reply.json()["image"]) == 64


def test_upload_cap_and_a_link_to_an_evicted_upload(web) -> None:
    too_big = request(web + "/api/lab/upload", method="POST", data=b"\0" * (64 * 1024 + 1), headers=CSRF)
    assert too_big.status == 413 and too_big.json()["field"] == "image"
    first = request(web + "/api/lab/upload", method="POST", data=sneaker_png(), headers=CSRF).json()["image"]
    for filler in (b"a", b"b"):  # upload_cache=2: the sneaker leaves the cache
        request(web + "/api/lab/upload", method="POST", data=filler, headers=CSRF)
    gone = request(web + f"/api/lab/{first}/analysis?model=lenet")
    assert gone.status == 404 and "upload it again" in gone.json()["message"]
    assert request(web + "/api/lab/..%2F..%2Fetc%2Fpasswd/analysis?model=lenet").status in (400, 404)


def test_lab_classifies_maps_and_attacks_a_sneaker(web) -> None:
    digest = request(web + "/api/lab/upload", method="POST", data=sneaker_png(), headers=CSRF).json()["image"]
    analysis = request(web + f"/api/lab/{digest}/analysis?model=lenet").json()
    assert analysis["predictions"][0]["label"] == "Sneaker"
    layers = {layer["layer"]: layer for layer in analysis["layers"]}
    assert len(layers["relu2"]["maps"]) == 16 and _png(layers["relu2"]["maps"][0]["png"]).startswith(b"\x89PNG")
    small = request(web + f"/api/lab/{digest}/attack?model=lenet&eps=0.01").json()
    large = request(web + f"/api/lab/{digest}/attack?model=lenet&eps=0.3").json()
    assert small["adversarial"]["label"] == "Sneaker" and large["adversarial"]["label"] != "Sneaker"
    assert request(web + f"/api/lab/{digest}/attack?model=lenet&eps=2").json()["field"] == "eps"
    closest = request(web + f"/api/lab/{digest}/closest-failure?model=lenet").json()
    assert closest["found"] and closest["adversarial"]["label"] != "Sneaker"
    assert closest["epsilon"] == closest["level"] / 255 and "c.minimal_attack(" in closest["python"]
    unit = request(web + f"/api/lab/{digest}/unit?model=lenet&layer=relu2&unit=3").json()
    assert _png(unit["map"]).startswith(b"\x89PNG") and unit["max"] >= unit["mean"] >= 0
    assert _png(unit["input"]).startswith(b"\x89PNG")
    assert layers["relu2"]["maps"][0]["unit"] in range(16)
    bad_unit = request(web + f"/api/lab/{digest}/unit?model=lenet&layer=relu2&unit=16")
    assert bad_unit.status == 400 and bad_unit.json()["field"] == "unit"
    bad = request(web + f"/api/lab/{digest}/saliency?model=lenet&method=bogus")
    assert bad.status == 400 and bad.json()["field"] == "method" and "grad_cam" in bad.json()["message"]


def test_copy_as_python_reproduces_the_saliency_view(web, service) -> None:
    digest = request(web + "/api/lab/upload", method="POST", data=sneaker_png(), headers=CSRF).json()["image"]
    view = request(web + f"/api/lab/{digest}/saliency?model=lenet&method=smoothgrad").json()
    code = view["python"]
    assert "seed=" in code and "samples=" in code  # every resolved parameter, the seed included
    assert request(web + f"/api/lab/images/{digest}").body == sneaker_png()  # the page's "download" of the input
    namespace: dict = {}
    exec(code.replace("'image.png'", "image_bytes"), {"image_bytes": sneaker_png()}, namespace)
    assert namespace["result"].overlay_png == _png(view["overlay"])


def test_visualizations_are_batched_cached_and_reproducible(web, service) -> None:
    url = web + "/api/models/lenet/layers/relu2/visualize"
    body = json.dumps({"channels": [0, 1, 2, 3], "params": {"steps": 32}}).encode()
    events = _events(request(url, method="POST", data=body, headers=CSRF).body)
    progress = [e for e in events if e["type"] == "progress"]
    result = events[-1]
    assert (
        result["type"] == "result"
        and result["computed"] == [0, 1, 2, 3]
        and set(result["units"]) == {"0", "1", "2", "3"}
    )
    assert progress and progress[-1]["step"] == progress[-1]["total"]
    start = time.perf_counter()
    again = _events(request(url, method="POST", data=body, headers=CSRF).body)
    assert time.perf_counter() - start < 1.0 and again == [{**result, "computed": []}]
    page = request(web + "/api/models/lenet/layers/relu2?per_page=4&steps=32").json()
    assert [u["visual"]["png"] for u in page["units"]] == [result["units"][str(c)] for c in range(4)]
    assert "index" in page["notice"] and "BuildIndex" in page["notice"]  # no index built yet
    namespace: dict = {}
    exec(result["python"], {}, namespace)
    assert list(namespace["result"].pngs) == [_png(result["units"][str(c)]) for c in range(4)]
    refused = request(
        url, method="POST", data=json.dumps({"channels": [0], "params": {"nope": 1}}).encode(), headers=CSRF
    )
    assert refused.status == 400 and refused.json()["field"] == "params.nope"


def test_access_token_login_sets_an_httponly_strict_cookie(service) -> None:
    token = "a-long-enough-access-token"
    server = _web(service, access_token=token)
    try:
        page = request(server.url + "/models/lenet?x=1")
        assert page.status == 303 and page.headers["location"].startswith("/login?next=%2Fmodels%2Flenet")
        assert request(server.url + "/api/models").status == 401
        assert request(server.url + "/login").status == 200
        wrong = request(server.url + "/api/login", method="POST", data=b'{"token": "nope"}', headers=CSRF)
        assert wrong.status == 401 and "set-cookie" not in wrong.headers
        login = request(
            server.url + "/api/login", method="POST", data=json.dumps({"token": token}).encode(), headers=CSRF
        )
        cookie = login.headers["set-cookie"]
        assert login.status == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
        session = cookie.split(";")[0]
        assert request(server.url + "/api/models", headers={"Cookie": session}).status == 200
        assert request(server.url + "/api/models", headers={"Cookie": session + "x"}).status == 401
    finally:
        server.stop()


def test_interp_web_refuses_a_public_address_without_a_token(tmp_path) -> None:
    from web.cli import parser, settings_from

    with pytest.raises(SystemExit, match="refusing to listen on 0.0.0.0"):
        settings_from(parser().parse_args(["--server", "x:1", "--host", "0.0.0.0"]))
    public = settings_from(parser().parse_args(["--host", "0.0.0.0", "--allow-unauthenticated"]))
    assert public.access_token is None and public.hosts() == ("*",)
    assert settings_from(parser().parse_args([])).hosts() == ("127.0.0.1", "::1", "localhost")
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123\n")
    settings = settings_from(parser().parse_args(["--host", "0.0.0.0", "--access-token-file", str(token)]))
    assert settings.access_token == "0123456789abcdef0123"
    token.write_text("short")
    with pytest.raises(SystemExit, match="at least 16"):
        settings_from(parser().parse_args(["--host", "10.0.0.1", "--access-token-file", str(token)]))
    assert settings_from(parser().parse_args(["--host", "::1"])).server == "localhost:50051"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:  # a free loopback port (for a process to take, or where none listens)
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stderr_until(process: subprocess.Popen, text: str, seconds: float) -> str:
    """The process's stderr up to the line holding ``text``, or all it wrote in ``seconds``."""
    import select

    assert process.stderr is not None
    seen, deadline = "", time.monotonic() + seconds
    while text not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = process.stderr.readline()
        if not line:  # the process ended
            break
        seen += line
    return seen


def _first_answer(process: subprocess.Popen, url: str) -> Any:
    """``url``'s answer once the interp-web ``process`` serves it (60 s at most)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return request(url)
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, (
                process.stderr.read() if process.stderr else ""
            )
            time.sleep(0.1)


def test_interp_web_process_serves_the_pages(service) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "web.cli", "--server", service, "--port", str(port)]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        reply = _first_answer(process, f"http://127.0.0.1:{port}/api/models")
        assert reply.status == 200 and reply.json()["models"][0]["name"] == "lenet"
        assert f"{service}" in reply.json()["python"]  # the snippet names the service, not the web port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_with_no_service_running_the_process_warns_and_the_pages_say_what_to_check() -> None:
    web_port, nothing = _free_port(), _free_port()
    cmd = [sys.executable, "-m", "web.cli", "--server", f"127.0.0.1:{nothing}", "--port", str(web_port)]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        warning = f"the service at 127.0.0.1:{nothing} does not answer yet (UNAVAILABLE"
        assert warning in _stderr_until(process, warning, 60)
        reply = _first_answer(process, f"http://127.0.0.1:{web_port}/api/models")
        assert reply.status == 503 and reply.json()["code"] == "UNAVAILABLE"
        assert "is interp-server running there? interp-web --server HOST:PORT" in reply.json()["message"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_layer_without_an_index_offers_to_build_one(web) -> None:
    before = request(web + "/api/models/lenet/layers/relu4?per_page=2").json()
    assert "BuildIndex" in before["notice"] and before["index_dataset"] == "fashion-mnist-test"  # the smallest
    assert all(unit["top"] is None for unit in before["units"])
    unit_page = request(web + "/api/models/lenet/layers/relu4/units/2?steps=2").json()
    assert "BuildIndex" in unit_page["notice"] and unit_page["index_dataset"] == "fashion-mnist-test"  # its button
    url = web + "/api/models/lenet/layers/relu4/index"
    missing = request(url, method="POST", data=b"{}", headers=CSRF)
    assert missing.status == 400 and missing.json()["field"] == "dataset"
    body = json.dumps({"dataset": "fashion-mnist-test"}).encode()
    assert request(url, method="POST", data=body).status == 403  # state-changing: the CSRF header is required
    events = _events(request(url, method="POST", data=body, headers=CSRF).body)
    assert events[-1]["type"] == "result" and events[-1]["images"] == 10_000
    assert "c.build_index('lenet', 'fashion-mnist-test', layers=['relu4']" in events[-1]["python"]
    after = request(web + "/api/models/lenet/layers/relu4?per_page=2").json()
    assert after["notice"] == "" and after["dataset"] == "fashion-mnist-test"
    assert all(unit["top"]["crop"].startswith("data:image/png") for unit in after["units"])
    # relu4 unit 2 of the trained LeNet never fires on the test set (its largest value is 0): its
    # "top" images are the first ids, which the pages say instead of showing them as what it detects
    dead = request(web + "/api/models/lenet/layers/relu4?per_page=4").json()["units"]
    assert [unit["silent"] for unit in dead] == [False, False, True, False]
    tied = request(web + "/api/models/lenet/layers/relu4/units/2?steps=2").json()
    assert tied["tied"] and [entry["value"] for entry in tied["top"]] == [0.0] * 9
    assert not request(web + "/api/models/lenet/layers/relu4/units/0?steps=2").json()["tied"]
    unknown = _events(request(url, method="POST", data=b'{"dataset": "nope"}', headers=CSRF).body)
    assert len(unknown) == 1 and unknown[0]["type"] == "error" and unknown[0]["code"] == "INVALID_ARGUMENT"
    assert unknown[0]["field"] == "dataset" and "fashion-mnist-test" in unknown[0]["message"]  # readable, on the page


def test_leaving_a_streamed_job_cancels_it_on_the_service(web, service) -> None:
    import http.client
    from urllib.parse import urlsplit

    from client import InterpClient

    host = urlsplit(web)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
    body = json.dumps({"dataset": "fashion-mnist-all"})  # 70,000 images: seconds of work
    connection.request("POST", "/api/models/lenet/layers/relu1/index", body=body, headers=CSRF)
    reply = connection.getresponse()
    assert reply.status == 200
    first = reply.readline()
    assert first.startswith(b"data: ") and json.loads(first[6:])["type"] == "progress"
    with InterpClient(service) as client:
        assert client.server_info().running_heavy == 1  # the build is computing
        connection.close()  # the page went away
        deadline = time.monotonic() + 10
        while client.server_info().running_heavy:
            assert time.monotonic() < deadline, "the index build kept running after the browser left"
            time.sleep(0.1)
    page = request(web + "/api/models/lenet/layers/relu1?per_page=1").json()
    assert "BuildIndex" in page["notice"]  # nothing was indexed


def test_lab_neighbours_and_a_streamed_dream(web) -> None:
    digest = request(web + "/api/lab/upload", method="POST", data=sneaker_png(), headers=CSRF).json()["image"]
    missing = request(web + f"/api/lab/{digest}/neighbors?model=lenet&layer=pool1").json()
    assert "BuildIndex" in missing["notice"] and missing["neighbors"] == []
    url = web + "/api/models/lenet/layers/relu2/index"
    request(url, method="POST", data=json.dumps({"dataset": "fashion-mnist-test"}).encode(), headers=CSRF)
    near = request(web + f"/api/lab/{digest}/neighbors?model=lenet&layer=relu2&k=4").json()
    assert near["notice"] == "" and len(near["neighbors"]) == 4 and near["dataset"] == "fashion-mnist-test"
    assert [n["label"] for n in near["neighbors"]].count("Sneaker") >= 3  # a sneaker's neighbours are sneakers
    body = json.dumps({"model": "lenet", "layer": "relu2", "params": {"iterations": 4, "octaves": 2}}).encode()
    events = _events(request(web + f"/api/lab/{digest}/dream", method="POST", data=body, headers=CSRF).body)
    result = events[-1]
    assert result["type"] == "result" and _png(result["png"]).startswith(b"\x89PNG") and result["gains"][0]["ratio"] > 1
    assert result["params"]["iterations"] == 4 and "c.dream(" in result["python"]
    assert any(e["type"] == "progress" for e in events)
    bad_body = json.dumps({"model": "lenet", "layer": "relu2", "params": {"octaves": "x"}}).encode()
    wrong = request(web + f"/api/lab/{digest}/dream", method="POST", data=bad_body, headers=CSRF)
    assert wrong.status == 400 and wrong.json()["field"] == "params.octaves"


def test_robustness_curves_flips_and_the_call_that_reproduces_them(web) -> None:
    body = {"model": "lenet", "dataset": "fashion-mnist-test", "methods": ["fgsm", "pgd"], "epsilons": [0.05, 0.2],
            "limit": 40}  # fmt: skip
    events = _events(request(web + "/api/robustness", method="POST", data=json.dumps(body).encode(), headers=CSRF).body)
    result = events[-1]
    assert result["type"] == "result" and result["images"] == 40 and result["epsilons"] == [0.05, 0.2]
    fgsm, pgd = result["curves"]
    assert fgsm["method"] == "fgsm" and pgd["accuracy"][1] <= pgd["accuracy"][0] <= result["clean_accuracy"]
    for curve in (fgsm, pgd):  # each image that flips is listed at the first point where it does
        assert sum(point["count"] for point in curve["flips"]) <= 40
        assert all(len(point["images"]) == point["count"] for point in curve["flips"])
    assert _png(result["curve_png"]).startswith(b"\x89PNG")
    namespace: dict = {}
    exec(result["python"], {}, namespace)
    assert [c.accuracy for c in namespace["result"].curves] == [tuple(c["accuracy"]) for c in result["curves"]]
    refused = request(web + "/api/robustness", method="POST", data=json.dumps({**body, "methods": []}).encode(),
                      headers=CSRF)  # fmt: skip
    assert refused.status == 400 and refused.json()["field"] == "methods"
    datasets = request(web + "/api/datasets").json()["datasets"]
    assert {d["name"] for d in datasets} >= {"fashion-mnist-test"} and all("/" not in d["name"] for d in datasets)


def test_embedding_map_with_the_lab_image_placed_on_it(web) -> None:
    digest = request(web + "/api/lab/upload", method="POST", data=sneaker_png(), headers=CSRF).json()["image"]
    body = {"model": "lenet", "dataset": "fashion-mnist-test", "layer": "relu4", "method": "pca", "limit": 500,
            "image": digest}  # fmt: skip
    events = _events(request(web + "/api/embedding", method="POST", data=json.dumps(body).encode(), headers=CSRF).body)
    result = events[-1]
    assert result["type"] == "result" and result["points"] == 500 and result["method"] == "pca"
    assert _png(result["scatter"]).startswith(b"\x89PNG") and _png(result["atlas"]).startswith(b"\x89PNG")
    assert result["placed"]["label"] == "Sneaker" and len(result["placed"]["neighbors"]) == 8
    assert "c.embedding(" in result["python"] and "c.place_images(" in result["placed"]["python"]
    again = _events(request(web + "/api/embedding", method="POST", data=json.dumps(body).encode(), headers=CSRF).body)
    assert again[-1]["reused"]  # the server's cache
    bad = request(web + "/api/embedding", method="POST", data=json.dumps({**body, "layer": "../x"}).encode(),
                  headers=CSRF)  # fmt: skip
    assert bad.status == 400 and bad.json()["field"] == "layer"


def test_unknown_paths_are_the_explorers_not_found_page_or_json(web) -> None:
    page = request(web + "/models/lenet/nothing/here")
    assert page.status == 404 and "text/html" in page.headers.get("content-type", "")
    assert b"/static/js/notfound.js" in page.body and b"interp explorer" in page.body
    api = request(web + "/api/no/such")
    assert api.status == 404 and api.json() == {"code": "NOT_FOUND", "message": "no API at /api/no/such", "field": None}
    unit = request(web + "/api/models/lenet/layers/relu2/units/abc")
    assert unit.status >= 400 and unit.json()["field"] == "unit" and "not abc" in unit.json()["message"]


def test_page_errors_name_the_last_page_and_no_internal_bound(web) -> None:
    past = request(web + "/api/models/lenet/layers/relu2?page=9&per_page=4").json()
    assert past["field"] == "page" and "the last page, 3 (16 units, 4 a page" in past["message"], past
    negative = request(web + "/api/models/lenet/layers/relu2?page=-1").json()
    assert negative["message"] == "page must be at least 0, got -1"


def test_a_first_layer_units_page_shows_its_kernel(web, service) -> None:
    """conv1's unit page carries the unit's 5x5 kernel as an image (grey 0, on the kernel's own
    scale), checked against the weights the SDK's Kernels returns; a unit of a layer whose kernels
    do not read the pixels (conv2: 6 input channels) or of a layer without kernels carries none."""
    import cv2
    import numpy as np

    from client import InterpClient

    page = request(web + "/api/models/lenet/layers/conv1/units/3?steps=2").json()
    kernel = page["kernel"]
    assert kernel["shape"] == [1, 5, 5] and "kernels(" in kernel["python"]
    pixels = cv2.imdecode(np.frombuffer(_png(kernel["png"]), np.uint8), cv2.IMREAD_GRAYSCALE)
    zoom = pixels.shape[0] // 5
    assert pixels.shape == (5 * zoom, 5 * zoom) and zoom * 5 >= 80
    with InterpClient(service) as client:
        weights = client.kernels("lenet", "conv1").weights[3, 0]
    expected = 0.5 + 0.5 * weights / np.abs(weights).max()
    np.testing.assert_allclose(pixels[::zoom, ::zoom] / 255.0, expected, atol=1 / 255 + 1e-6)
    for layer in ("conv2", "relu1"):
        assert request(web + f"/api/models/lenet/layers/{layer}/units/0?steps=2").json()["kernel"] is None
    # the layer page: every card of conv1 carries its own unit's kernel, the other layers' none
    cards = request(web + "/api/models/lenet/layers/conv1?steps=2").json()["units"]
    assert [card["kernel"]["png"] for card in cards if card["unit"] == 3] == [kernel["png"]]
    assert len({card["kernel"]["png"] for card in cards}) == 6
    conv2 = request(web + "/api/models/lenet/layers/conv2?steps=2").json()["units"]
    assert all(card["kernel"] is None for card in conv2)


def test_kernels_only_for_the_first_layer_and_a_failing_kernels_call_leaves_the_page_without() -> None:
    """first_layer_kernels asks Kernels for the model's first layer with kernels only (a deeper conv
    is never fetched, whatever its input channels), and a Kernels error gives None: the unit and
    layer pages then load without the kernel instead of failing."""
    from types import SimpleNamespace

    import numpy as np

    from client.errors import InterpError
    from web.api.layers import first_layer_kernels

    catalogue = (("normalize", False), ("conv1", True), ("conv2", True))
    layers = [SimpleNamespace(name=name, has_kernels=has) for name, has in catalogue]
    asked: list[str] = []

    def kernels(model: str, layer: str) -> SimpleNamespace:
        asked.append(layer)
        if fail:
            raise InterpError("Conv1d has no image kernels")
        return SimpleNamespace(weights=np.ones((6, 1, 5, 5), np.float32))

    description = SimpleNamespace(layers=layers, model=SimpleNamespace(input_shape=(1, 28, 28)))
    explorer = SimpleNamespace(client=SimpleNamespace(kernels=kernels), code=lambda *args, **kwargs: "python")
    fail = False
    conv1, conv2 = layers[1], layers[2]
    found = first_layer_kernels(explorer, "m", description, conv1)  # type: ignore[arg-type]
    assert found is not None and found[0].shape == (6, 1, 5, 5)
    assert first_layer_kernels(explorer, "m", description, conv2) is None and asked == ["conv1"]  # type: ignore[arg-type]
    fail = True
    assert first_layer_kernels(explorer, "m", description, conv1) is None  # type: ignore[arg-type]
