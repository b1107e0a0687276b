"""Tests for tinyvae.datasets: IDX parsing, the bundled subset, folder loading and the downloader (no network:
downloads are served by a local HTTP server on 127.0.0.1 from files the tests write)."""

import gzip
import hashlib
import http.server
import re
import socket
import struct
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tinyvae import datasets
from tinyvae.datasets import download as dl
from tinyvae.datasets import read_idx

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
BUNDLED = Path(datasets.__file__).parent / "data" / "mnist-small"
NAMES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(a):
    header = bytes([0, 0, _CODES[a.dtype.type], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def fake_mnist(n_train, n_test, seed=0, n_train_labels=None):
    """The four files of a tiny MNIST-shaped data set, gzipped: {file name: bytes}."""
    rng = np.random.default_rng(seed)
    n_train_labels = n_train if n_train_labels is None else n_train_labels
    arrays = [rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, n_train_labels, dtype=np.uint8),
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, n_test, dtype=np.uint8)]
    return {name: gzip.compress(idx_bytes(a), mtime=0) for name, a in zip(NAMES, arrays, strict=True)}


def write_files(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


# ---------------------------------------------------------------- read_idx

@pytest.mark.parametrize("array", [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([-(2 ** 31), -1, 0, 7, 2 ** 31 - 1], dtype=np.int32),
    np.linspace(-1e300, 1e300, 12).reshape(3, 4),  # float64
    np.array([[-128, 5], [127, 0]], dtype=np.int8),
    np.array([-300, 300], dtype=np.int16),
    np.array([1.5, -2.25], dtype=np.float32),
])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, array, gz):
    data = idx_bytes(array)
    path = tmp_path / "plain.bin"  # no .gz suffix even when gzipped: detection is by magic bytes
    path.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(path)
    assert out.shape == array.shape
    assert out.dtype == array.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, array)
    out[...] = 0  # the result is a writable copy


GOOD = idx_bytes(np.arange(15, dtype=np.uint8).reshape(5, 3))


@pytest.mark.parametrize("content, message", [
    (b"", r"empty file, expected at least a 4-byte header"),
    (b"\x01\x00" + GOOD[2:], r"magic number starts with 0x01 0x00, expected two zero bytes"),
    (GOOD[:2] + b"\x07" + GOOD[3:], r"unknown IDX data type 0x07, expected one of 0x08 \(uint8\).*0x0E \(float64\)"),
    (b"\x00\x00\x08\x00" + b"\x00" * 8, r"declares 0 dimensions, expected at least 1"),
    (b"\x00\x00\x08\x03" + b"\x00\x00\x00\x01", r"truncated IDX header: 3 dimensions need 16 header bytes"),
    (GOOD[:-5], r"truncated IDX file: header declares 5x3 uint8 = 15 bytes of data but only 10 are present"),
    (GOOD + b"\x00\x00", r"trailing bytes: header declares 5x3 uint8 = 15 bytes of data but 17 are present"),
    (gzip.compress(GOOD)[:-12], r"corrupt gzip stream"),
    (b"\x1f\x8b" + b"not deflate data at all", r"corrupt gzip stream"),
])
def test_read_idx_rejects_corrupt_files(tmp_path, content, message):
    path = tmp_path / "broken-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path)
    assert str(info.value).startswith(f"{path}: ")


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.gz"))):
        read_idx(tmp_path / "nope.gz")


# ---------------------------------------------------------------- the bundled subset

def test_mnist_small():
    data = datasets.load("mnist-small")
    assert data.x_train.shape == (10_000, 784) and data.x_test.shape == (2_000, 784)
    assert data.y_train.shape == (10_000,) and data.y_test.shape == (2_000,)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.image_shape == (28, 28)
    for x, y in [(data.x_train, data.y_train), (data.x_test, data.y_test)]:
        assert 0.0 <= x.min() and x.max() == 1.0  # MNIST digits have saturated (255) pixels
        assert set(np.unique(y)) == set(range(10))
    assert "10000, 784" in repr(data) and "mnist-small" in repr(data)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared/data/mnist is not available")
def test_mnist_small_is_the_prefix_of_mnist():
    data = datasets.load("mnist-small")
    for x, y, images, labels, n in [(data.x_train, data.y_train, NAMES[0], NAMES[1], 10_000),
                                    (data.x_test, data.y_test, NAMES[2], NAMES[3], 2_000)]:
        full_x = read_idx(SHARED_MNIST / images)[:n].reshape(n, 784)
        np.testing.assert_array_equal(x, full_x.astype(np.float32) / np.float32(255))
        np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), full_x)  # pixel values untouched
        np.testing.assert_array_equal(y, read_idx(SHARED_MNIST / labels)[:n])


def test_bundled_md5_matches_readme():
    readme = (BUNDLED / "README.md").read_text()
    recorded = dict(re.findall(r"^\| (\S+\.gz) \|.*\| ([0-9a-f]{32}) \|$", readme, re.MULTILINE))
    assert sorted(recorded) == sorted(NAMES)
    for name, md5 in recorded.items():
        assert hashlib.md5((BUNDLED / name).read_bytes()).hexdigest() == md5, name


# ---------------------------------------------------------------- folders and names

def test_load_folder(tmp_path):
    files = fake_mnist(7, 3)
    folder = write_files(tmp_path / "digits", files)
    # a file unpacked by hand (no .gz) is found too
    (folder / "t10k-labels-idx1-ubyte").write_bytes(gzip.decompress(files[NAMES[3]]))
    (folder / NAMES[3]).unlink()
    data = datasets.load(folder)
    assert data.x_train.shape == (7, 784) and data.x_test.shape == (3, 784)
    raw = read_idx(folder / NAMES[0]).reshape(7, 784)
    np.testing.assert_array_equal(data.x_train, raw.astype(np.float32) / 255)
    np.testing.assert_array_equal(data.y_test, list(gzip.decompress(files[NAMES[3]])[8:]))
    assert data.y_test.dtype == np.int64 and data.image_shape == (28, 28)
    assert datasets.load(str(folder)).x_test.shape == (3, 784)  # a str path works as well


def test_load_folder_count_mismatch(tmp_path):
    folder = write_files(tmp_path / "bad", fake_mnist(7, 3, n_train_labels=6))
    with pytest.raises(ValueError, match=r"train set has 7 images .* but 6 labels"):
        datasets.load(folder)


def test_load_folder_missing_file(tmp_path):
    folder = write_files(tmp_path / "partial", fake_mnist(4, 2))
    (folder / NAMES[2]).unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-images-idx3-ubyte\.gz .*not found in .*partial"):
        datasets.load(folder)


def test_load_unknown_name(tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar'.*mnist-small, mnist, fashion-mnist.*folder"):
        datasets.load("cifar")
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.load(tmp_path / "does-not-exist")


# ---------------------------------------------------------------- where named data sets live

def test_cache_dir_per_platform(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.cache_dir() == tmp_path / "xdg" / "tinyvae"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert datasets.cache_dir() == tmp_path / ".cache" / "tinyvae"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert datasets.cache_dir() == tmp_path / "Library" / "Caches" / "tinyvae"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert datasets.cache_dir() == tmp_path / "local" / "tinyvae"


def test_root_then_env_then_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write_files(tmp_path / "xdg" / "tinyvae" / "mnist", fake_mnist(3, 1))
    write_files(tmp_path / "env" / "mnist", fake_mnist(5, 1))
    write_files(tmp_path / "root", fake_mnist(4, 1))
    # files present are used as they are (no md5 check); a dead mirror proves nothing is downloaded
    monkeypatch.setitem(dl.MIRRORS, "mnist", [dead_url()])

    monkeypatch.setenv("TINYVAE_DATA", str(tmp_path / "env"))
    assert len(datasets.load("mnist", root=tmp_path / "root").x_train) == 4
    assert len(datasets.load("mnist").x_train) == 5
    monkeypatch.delenv("TINYVAE_DATA")
    assert len(datasets.load("mnist", progress=False).x_train) == 3


def test_missing_files_without_download(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        datasets.load("fashion-mnist", root=tmp_path / "empty", download=False)
    message = str(info.value)
    assert str(tmp_path / "empty") in message and all(name in message for name in NAMES)
    assert "download=True" in message and "root=" in message and "TINYVAE_DATA" in message
    assert not (tmp_path / "empty").exists()  # nothing created when nothing is downloaded


# ---------------------------------------------------------------- the downloader, against a local server

class _Handler(http.server.BaseHTTPRequestHandler):
    """GET /ok/<name> serves the file; /short/<name> announces 1000 more bytes than it sends, then closes."""

    def do_GET(self):
        mode, _, name = self.path.lstrip("/").partition("/")
        data = self.server.files.get(name)
        if data is None or mode not in ("ok", "short"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data) + (1000 if mode == "short" else 0)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files = {}
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def dead_url():
    """A URL on a port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def md5(data):
    return hashlib.md5(data).hexdigest()


def test_fetch_success(server, tmp_path):
    srv, url = server
    srv.files["a.gz"] = payload = bytes(range(256)) * 300
    path = dl.fetch("a.gz", tmp_path / "cache", [url + "/ok/"], md5(payload), progress=True)
    assert path == tmp_path / "cache" / "a.gz" and path.read_bytes() == payload
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["a.gz"]


def test_fetch_md5_mismatch(server, tmp_path):
    srv, url = server
    srv.files["a.gz"] = b"not the official file"
    with pytest.raises(RuntimeError, match=r"could not download a\.gz(.|\n)*md5 mismatch") as info:
        dl.fetch("a.gz", tmp_path / "cache", [url + "/ok/"], "0" * 32, progress=False)
    assert "expected " + "0" * 32 in str(info.value)
    assert list((tmp_path / "cache").iterdir()) == []


def test_fetch_truncated_transfer(server, tmp_path):
    srv, url = server
    srv.files["a.gz"] = payload = b"x" * 5000
    with pytest.raises(RuntimeError, match=r"a\.gz(.|\n)*(truncated transfer: received 5000 of the 6000|Incomplete)"):
        dl.fetch("a.gz", tmp_path / "cache", [url + "/short/"], md5(payload), progress=False)
    assert list((tmp_path / "cache").iterdir()) == []


def test_fetch_falls_back_to_next_mirror(server, tmp_path):
    srv, url = server
    srv.files["a.gz"] = payload = b"payload" * 100
    mirrors = [dead_url(), url + "/gone/", url + "/ok/"]
    assert dl.fetch("a.gz", tmp_path, mirrors, md5(payload), progress=False).read_bytes() == payload
    assert [p.name for p in tmp_path.iterdir()] == ["a.gz"]


def test_fetch_all_mirrors_fail(server, tmp_path):
    _, url = server
    dead = dead_url()
    with pytest.raises(RuntimeError) as info:
        dl.fetch("a.gz", tmp_path, [dead, url + "/gone/"], "0" * 32, progress=False, timeout=5)
    message = str(info.value)
    assert f"{dead}a.gz: URLError" in message and f"{url}/gone/a.gz: HTTPError: HTTP Error 404" in message
    assert "root=" in message and "TINYVAE_DATA" in message
    assert list(tmp_path.iterdir()) == []


def test_load_downloads_missing_files(server, monkeypatch, tmp_path):
    srv, url = server
    srv.files.update(fake_mnist(6, 2, seed=1))
    monkeypatch.setitem(dl.MIRRORS, "mnist", [dead_url(), url + "/ok/"])
    monkeypatch.setitem(dl.MD5, "mnist", {name: md5(data) for name, data in srv.files.items()})
    root = write_files(tmp_path / "root", {NAMES[3]: srv.files[NAMES[3]]})  # one file already there
    data = datasets.load("mnist", root=root, progress=False)
    assert data.x_train.shape == (6, 784) and data.y_test.shape == (2,)
    assert sorted(p.name for p in root.iterdir()) == sorted(NAMES)
    for name in NAMES:
        assert (root / name).read_bytes() == srv.files[name]


def test_binarized_variant_thresholds_the_pixels():
    from tinyvae import datasets

    grey, binary = datasets.load("mnist-small"), datasets.load("mnist-small-binarized")
    assert binary.name == "mnist-small-binarized"
    assert set(np.unique(binary.x_train)) <= {0.0, 1.0} and binary.x_train.dtype == np.float32
    assert np.array_equal(binary.x_test, (grey.x_test > 0.5).astype(np.float32))
    assert np.array_equal(binary.y_train, grey.y_train)


def test_failed_download_removes_the_folders_it_made(tmp_path, monkeypatch):
    from tinyvae import datasets
    from tinyvae.datasets import download

    monkeypatch.setitem(download.MIRRORS, "mnist", ["http://127.0.0.1:9/"])
    root = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError, match="every mirror failed"):
        datasets.load("mnist", root=root, progress=False)
    assert not (tmp_path / "a").exists() and tmp_path.exists()
