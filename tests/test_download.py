"""Verified downloads against a server on 127.0.0.1: mirrors, checksums, nothing left behind."""

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.api import RemoteFile
from harness.download import (
    DeadlineError,
    DownloadError,
    OfflineError,
    download,
    fetch_missing,
    with_mirrors,
)
from harness.synthetic import write_mnist
from harness_mnist.dataset import MnistDataset

FAST = {"timeout_s": 5.0, "retries": 2, "backoff_s": 0.0, "progress": False}


class FixtureServer:
    """Serves ``routes`` (path -> bytes, an int status, a function of the request handler, or a
    list of those, one per request)."""

    def __init__(self):
        self.routes = {}
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                answer = server.routes.get(self.path, 404)
                if isinstance(answer, list):
                    answer = answer.pop(0) if len(answer) > 1 else answer[0]
                if callable(answer):
                    with contextlib.suppress(ConnectionError):  # the client gave up
                        answer(self)
                    return
                if isinstance(answer, int):
                    self.send_error(answer)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    fixture = FixtureServer()
    try:
        yield fixture
    finally:
        fixture.close()


@pytest.fixture
def refused_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/file"


def md5(data):
    return f"md5:{hashlib.md5(data).hexdigest()}"


def test_downloads_verifies_and_moves_the_file_into_place(server, tmp_path):
    payload = b"fixture bytes" * 1000
    server.routes["/a.bin"] = payload
    remote = RemoteFile("a.bin", (f"{server.url}/a.bin",), md5(payload))

    path = download(remote, tmp_path / "data", **FAST)

    assert path == tmp_path / "data" / "a.bin"
    assert path.read_bytes() == payload
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["a.bin"]


def test_sha256_checksums_are_accepted(server, tmp_path):
    server.routes["/a.bin"] = b"abc"
    digest = hashlib.sha256(b"abc").hexdigest()
    remote = RemoteFile("a.bin", (f"{server.url}/a.bin",), f"sha256:{digest}")

    assert download(remote, tmp_path, **FAST).read_bytes() == b"abc"


def test_primary_404_falls_back_to_the_mirror(server, tmp_path):
    payload = b"from the mirror"
    server.routes["/mirror/a.bin"] = payload
    urls = (f"{server.url}/primary/a.bin", f"{server.url}/mirror/a.bin")

    path = download(RemoteFile("a.bin", urls, md5(payload)), tmp_path, **FAST)

    assert path.read_bytes() == payload
    assert server.requests == ["/primary/a.bin", "/mirror/a.bin"]  # a 404 is not retried


def test_a_server_error_is_retried_on_the_same_location(server, tmp_path):
    payload = b"second time lucky"
    server.routes["/a.bin"] = [503, payload]

    path = download(RemoteFile("a.bin", (f"{server.url}/a.bin",), md5(payload)), tmp_path, **FAST)

    assert path.read_bytes() == payload
    assert server.requests == ["/a.bin", "/a.bin"]


def test_corrupt_payload_is_a_checksum_error_and_leaves_no_file(server, tmp_path):
    server.routes["/a.bin"] = b"corrupted in transit"
    data_dir = tmp_path / "data"
    remote = RemoteFile("a.bin", (f"{server.url}/a.bin",), md5(b"the real bytes"))

    with pytest.raises(DownloadError, match="checksum mismatch: expected md5:") as error:
        download(remote, data_dir, **FAST)

    assert not isinstance(error.value, OfflineError)
    assert list(data_dir.iterdir()) == []


def test_connection_refused_is_one_clear_offline_error(refused_url, tmp_path):
    data_dir = tmp_path / "data"
    dataset = MnistDataset()
    dataset.remote_files = lambda: [
        RemoteFile("train-images-idx3-ubyte.gz", (refused_url,), "md5:0")
    ]

    with pytest.raises(OfflineError) as error:
        fetch_missing(dataset, data_dir, **FAST)

    message = str(error.value)
    assert "could not reach any location" in message and "ConnectionRefusedError" in message
    assert str(data_dir) in message
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in message
    assert "Copy them there" in message and "HARNESS_DATA_DIR" in message
    assert list(data_dir.iterdir()) == []


def serve_synthetic_mnist(server, tmp_path: Path, route: str) -> dict[str, bytes]:
    """Tiny MNIST files in their canonical format, served under ``route``: name -> bytes."""
    source = tmp_path / "source"
    files = {path.name: path.read_bytes() for path in write_mnist(source, train=10, test=10)}
    for name, payload in files.items():
        server.routes[f"{route}/{name}"] = payload
    return files


def mnist_at(base_url: str, files: dict[str, bytes]) -> MnistDataset:
    """MNIST whose own location for each of ``files`` is ``base_url``, checksums from them."""
    dataset = MnistDataset()
    dataset.remote_files = lambda: [
        RemoteFile(name, (f"{base_url}/{name}",), md5(payload)) for name, payload in files.items()
    ]
    return dataset


def test_fetch_downloads_only_what_is_missing_then_the_cache_is_used(server, tmp_path):
    data_dir = tmp_path / "data"
    files = serve_synthetic_mnist(server, tmp_path, "/mnist")
    dataset = mnist_at(f"{server.url}/mnist", files)
    (data_dir).mkdir()
    (data_dir / "t10k-labels-idx1-ubyte").write_bytes(b"")  # present uncompressed: not fetched

    fetched = fetch_missing(dataset, data_dir, **FAST)
    again = fetch_missing(dataset, data_dir, **FAST)

    assert sorted(path.name for path in fetched) == [
        "t10k-images-idx3-ubyte.gz",
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]
    assert again == []
    assert len(server.requests) == 3
    assert len(dataset.load(data_dir, "train")) == 10


def drip(announced: int, every_s: float):
    """A server that announces ``announced`` bytes and sends one every ``every_s`` seconds."""

    def answer(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(announced))
        handler.end_headers()
        for _ in range(announced):
            handler.wfile.write(b"x")
            time.sleep(every_s)

    return answer


def endless(handler):
    """A body with no announced length that never ends."""
    handler.send_response(200)
    handler.end_headers()
    while True:
        handler.wfile.write(b"x" * 65536)


def test_a_dripping_server_is_given_up_at_the_files_deadline(server, tmp_path):
    server.routes["/a.bin"] = drip(1000, every_s=0.02)
    data_dir = tmp_path / "data"
    remote = RemoteFile("a.bin", (f"{server.url}/a.bin",), md5(b"x" * 1000), 1000)

    started = time.monotonic()
    with pytest.raises(DeadlineError, match=r"still downloading .* at the file's deadline"):
        download(remote, data_dir, **(FAST | {"deadline_s": 1.0}))

    assert time.monotonic() - started < 1.0 + FAST["timeout_s"]
    assert list(data_dir.iterdir()) == []


def test_an_endless_body_stops_at_the_files_known_size(server, tmp_path):
    server.routes["/a.bin"] = endless
    data_dir = tmp_path / "data"
    remote = RemoteFile("a.bin", (f"{server.url}/a.bin",), md5(b"x" * 1000), 1000)

    with pytest.raises(DownloadError, match="sent more than the 1000 bytes expected"):
        download(remote, data_dir, **FAST)

    assert list(data_dir.iterdir()) == []


def test_a_location_announcing_the_wrong_size_is_skipped_for_the_next(server, tmp_path):
    payload = b"the real bytes"
    server.routes["/wrong/a.bin"] = payload * 2
    server.routes["/right/a.bin"] = payload
    urls = (f"{server.url}/wrong/a.bin", f"{server.url}/right/a.bin")

    path = download(RemoteFile("a.bin", urls, md5(payload), len(payload)), tmp_path, **FAST)

    assert path.read_bytes() == payload
    assert server.requests == ["/wrong/a.bin", "/right/a.bin"]


def test_mirrors_from_the_environment_come_first_the_datasets_own_first_of_all(monkeypatch):
    monkeypatch.setenv("HARNESS_MIRROR", "http://127.0.0.1:9/all/")
    monkeypatch.setenv("HARNESS_MIRROR_MNIST", "http://127.0.0.1:9/mnist")
    remote = RemoteFile("a.gz", ("http://127.0.0.1:9/origin/a.gz",), "md5:0", 3)

    assert with_mirrors(remote, "mnist").urls == (
        "http://127.0.0.1:9/mnist/a.gz",
        "http://127.0.0.1:9/all/a.gz",
        "http://127.0.0.1:9/origin/a.gz",
    )
    assert with_mirrors(remote, "cifar10").urls[0] == "http://127.0.0.1:9/all/a.gz"


def drip_mnist(server, route: str) -> None:
    """Every MNIST file under ``route``, announced at the size MNIST expects (so that no location
    is refused for its size), sent a byte every 10 ms."""
    for remote in MnistDataset().remote_files():
        announced = getattr(remote, "size", None) or 100_000
        server.routes[f"{route}/{remote.filename}"] = drip(announced, every_s=0.01)


def sigterm_mid_fetch(server, argv: list[str], env: dict[str, str], data_dir: Path):
    """Run ``argv`` (no mirror from this environment, ``env`` added), SIGTERM it once the server
    is sending it a file; its exit status and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_MIRROR")} | env
    fetch = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (server.requests and list(data_dir.glob(".*.part"))):
            assert fetch.poll() is None and time.monotonic() < deadline, "no download started"
            time.sleep(0.05)
        time.sleep(0.3)  # the body is coming
        fetch.send_signal(signal.SIGTERM)
        _, stderr = fetch.communicate(timeout=30)
    finally:
        fetch.kill()
    return fetch.returncode, stderr


@pytest.mark.slow
def test_sigterm_during_a_fetch_leaves_nothing_in_the_data_folder(server, tmp_path):
    drip_mnist(server, "/mirror")
    data_dir = tmp_path / "data"
    env = {"HARNESS_MIRROR_MNIST": f"{server.url}/mirror", "HARNESS_PLUGINS": "mnist"}
    argv = [sys.executable, "-m", "harness", "data", "fetch", "mnist", "--data-dir", str(data_dir)]
    returncode, stderr = sigterm_mid_fetch(server, argv, env, data_dir)
    assert returncode == 128 + signal.SIGTERM, stderr
    assert list(data_dir.iterdir()) == []
    assert server.requests == ["/mirror/train-images-idx3-ubyte.gz"]  # stopped inside it


REDIRECTED_FETCH = """
import dataclasses, sys
import harness.download
from harness.cli import main

own = harness.download.download

def from_the_test_server(remote, data_dir, **options):
    remote = dataclasses.replace(remote, urls=(f"{sys.argv[1]}/{remote.filename}",))
    return own(remote, data_dir, **options)

harness.download.download = from_the_test_server
sys.exit(main(["data", "fetch", "mnist", "--data-dir", sys.argv[2]]))
"""


@pytest.mark.slow
def test_sigterm_to_harness_data_fetch_mid_file_removes_its_part_file(server, tmp_path):
    """No mirror setting needed: the command's own process points each file at the server."""
    drip_mnist(server, "/own")
    data_dir = tmp_path / "data"
    argv = [sys.executable, "-c", REDIRECTED_FETCH, f"{server.url}/own", str(data_dir)]
    returncode, stderr = sigterm_mid_fetch(server, argv, {"HARNESS_PLUGINS": "mnist"}, data_dir)
    assert returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr
    assert list(data_dir.iterdir()) == []
    assert server.requests == ["/own/train-images-idx3-ubyte.gz"]


def test_the_suites_mirrors_come_after_the_environments_this_datasets_first(monkeypatch):
    monkeypatch.setenv("HARNESS_MIRROR", "http://127.0.0.1:9/env")
    monkeypatch.delenv("HARNESS_MIRROR_MNIST", raising=False)
    remote = RemoteFile("a.gz", ("http://127.0.0.1:9/origin/a.gz",), "md5:0", 3)
    suite = {"default": "http://127.0.0.1:9/suite-all", "mnist": "http://127.0.0.1:9/suite-mnist/"}

    assert with_mirrors(remote, "mnist", suite).urls == (
        "http://127.0.0.1:9/env/a.gz",
        "http://127.0.0.1:9/suite-mnist/a.gz",
        "http://127.0.0.1:9/suite-all/a.gz",
        "http://127.0.0.1:9/origin/a.gz",
    )
    assert "http://127.0.0.1:9/suite-mnist/a.gz" not in with_mirrors(remote, "cifar10", suite).urls


def test_fetch_tries_the_suites_mirror_before_the_datasets_own_location(
    server, refused_url, tmp_path
):
    data_dir = tmp_path / "data"
    files = serve_synthetic_mnist(server, tmp_path, "/suite-mirror")
    dataset = mnist_at(refused_url.rsplit("/", 1)[0], files)

    fetched = fetch_missing(
        dataset, data_dir, mirrors={"mnist": f"{server.url}/suite-mirror"}, **FAST
    )

    assert sorted(path.name for path in fetched) == sorted(files)
    assert all(request.startswith("/suite-mirror/") for request in server.requests)
