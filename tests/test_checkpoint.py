"""Tests for tinyvae.checkpoint: exact round trips, exact resumption of training, atomic writes, clear errors."""
import json
import os
import tempfile

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import checkpoint, datasets
from tinyvae.checkpoint import load, save
from tinyvae.train import History, fit

X = datasets.load("mnist-small").x_train[:160]


def params(model):
    return {name: np.array(tv.to_numpy(p.data), copy=True) for name, p in model.named_parameters()}


def assert_same_params(a, b):
    pa, pb = params(a), params(b)
    assert list(pa) == list(pb)
    for name in pa:
        assert pa[name].dtype == pb[name].dtype and np.array_equal(pa[name], pb[name]), name


def small(kind, dtype=None):
    if kind == "vae":
        return tv.VAE(784, hidden=(16,), latent_dim=3, beta=0.7, dtype=dtype, rng=1)
    if kind == "dae":
        return tv.DenoisingAutoencoder(784, hidden=(16,), latent_dim=3, noise="masking", noise_level=0.3,
                                       dtype=dtype, rng=1)
    return tv.Autoencoder(784, hidden=[16, 8], latent_dim=2, likelihood="gaussian", dtype=dtype, rng=1)


@pytest.mark.parametrize("kind", ["vae", "dae"])
def test_resuming_from_a_checkpoint_replays_the_uninterrupted_run_exactly(kind, tmp_path):
    straight = small(kind)
    h_straight = fit(straight, X, 4, batch_size=32, seed=7, x_val=X[:50], progress=False)

    first = small(kind)
    opt = tv.Adam(first.parameters(), lr=1e-3)
    h = fit(first, X, 2, batch_size=32, seed=7, optimizer=opt, x_val=X[:50], progress=False)
    save(first, tmp_path / "run.npz", opt, epoch=2, history=h.to_dict())
    del first, opt

    ckpt = load(tmp_path / "run.npz")
    h = History.from_dict(ckpt.meta["history"])
    fit(ckpt.model, X, 2, batch_size=32, seed=7, optimizer=ckpt.optimizer, x_val=X[:50], progress=False,
        start_epoch=ckpt.meta["epoch"], history=h)
    assert_same_params(straight, ckpt.model)
    for key in ("epochs", "train_loss", "train_recon", "train_kl", "val_loss", "val_recon", "val_kl"):
        assert h[key] == h_straight[key], key


@pytest.mark.parametrize("kind", ["vae", "dae", "ae"])
def test_round_trip_keeps_model_optimizer_and_meta(kind, tmp_path):
    model = small(kind, dtype="float64")
    opt = tv.SGD(model.parameters(), lr=0.05, momentum=0.9)
    fit(model, X[:64], 1, batch_size=32, optimizer=opt, progress=False)
    path = tmp_path / "m.npz"
    assert save(model, path, opt, note="hello", numbers=[1, 2.5]) == os.fspath(path)
    ckpt = load(path)
    assert type(ckpt.model) is type(model) and ckpt.model.config() == model.config()
    assert ckpt.model.dtype == "float64"
    assert all(tv.backend.is_array(p.data) for p in ckpt.model.parameters())  # on the ACTIVE backend
    assert_same_params(model, ckpt.model)
    assert ckpt.meta == {"note": "hello", "numbers": [1, 2.5]}
    assert ckpt.config["backend"] == tv.backend_name() and ckpt.config["tinyvae_version"] == tv.__version__
    saved, loaded = opt.state_dict(), ckpt.optimizer.state_dict()
    assert type(ckpt.optimizer) is tv.SGD and loaded["t"] == saved["t"] == 2
    assert loaded["hyperparameters"] == saved["hyperparameters"]
    for name, a in saved["buffers"].items():
        assert np.array_equal(tv.to_numpy(a), tv.to_numpy(loaded["buffers"][name])), name
    assert [id(p) for p in ckpt.optimizer.params] == [id(p) for p in ckpt.model.parameters()]


def test_without_optimizer_and_the_file_reads_without_pickle(tmp_path):
    model = small("vae")
    path = tmp_path / "plain.npz"
    save(model, path)
    assert load(path).optimizer is None
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        config = json.loads(bytes(data["config"]).decode("utf-8"))
    assert keys == {"config"} | {f"param/{name}" for name, _ in model.named_parameters()}
    assert config["format_version"] == checkpoint.FORMAT_VERSION and config["model"] == model.config()
    assert config["optimizer"] is None


@pytest.mark.backends("numpy")
@pytest.mark.needs("array_api_strict")
def test_a_checkpoint_saved_under_one_backend_loads_under_another(tmp_path):
    tv.use("strict")
    model = small("vae")
    opt = tv.Adam(model.parameters())
    fit(model, X[:64], 1, batch_size=32, optimizer=opt, progress=False)
    expected = params(model)
    save(model, tmp_path / "s.npz", opt)
    tv.use("numpy")
    ckpt = load(tmp_path / "s.npz")
    assert isinstance(ckpt.model.mu_head.W.data, np.ndarray) and ckpt.optimizer.t == 2
    got = params(ckpt.model)
    assert all(np.array_equal(expected[k], got[k]) for k in expected)


@pytest.mark.backends("numpy")
def test_a_failed_write_leaves_no_file_and_no_temporary(tmp_path, monkeypatch):
    model = small("ae")

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save(model, tmp_path / "new.npz")
    assert os.listdir(tmp_path) == []


@pytest.mark.backends("numpy")
def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    old = small("ae")
    save(old, tmp_path / "m.npz", step=1)
    monkeypatch.setattr(checkpoint.np, "savez", lambda f, **arrays: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save(small("vae"), tmp_path / "m.npz", step=2)
    assert os.listdir(tmp_path) == ["m.npz"]
    ckpt = load(tmp_path / "m.npz")
    assert ckpt.meta == {"step": 1}
    assert_same_params(old, ckpt.model)


@pytest.mark.backends("numpy")
def test_bad_save_targets_name_the_path(tmp_path):
    model = small("ae")
    with pytest.raises(IsADirectoryError, match=f"{tmp_path}.* is a folder"):
        save(model, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save(model, tmp_path / "missing" / "m.npz")
    with pytest.raises(TypeError, match="JSON-serializable"):
        save(model, tmp_path / "m.npz", history=History())
    with pytest.raises(ValueError, match="does not hold this model's parameters"):
        save(model, tmp_path / "m.npz", tv.Adam(small("ae").parameters()))
    assert os.listdir(tmp_path) == []


@pytest.mark.backends("numpy")
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders")
def test_an_unwritable_folder_is_a_clear_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            save(small("ae"), folder / "m.npz")
    finally:
        folder.chmod(0o700)


@pytest.mark.backends("numpy")
def test_a_refused_temporary_file_names_the_folder(tmp_path, monkeypatch):
    def refuse(**kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match=f"cannot write checkpoint .*m.npz: the folder {tmp_path} is not wri"):
        save(small("ae"), tmp_path / "m.npz")


def rewrite(src, dst, drop=(), **replace):
    """A copy of the checkpoint src at dst with some entries dropped or replaced."""
    with np.load(src, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k not in drop}
    arrays.update(replace)
    np.savez(dst, **arrays)
    return dst


def config_bytes(config):
    return np.frombuffer(json.dumps(config).encode(), dtype=np.uint8)


@pytest.mark.backends("numpy")
def test_bad_files_are_clear_errors(tmp_path):
    model = small("vae")
    good = tmp_path / "good.npz"
    save(model, good, tv.Adam(model.parameters()))
    raw = good.read_bytes()
    with np.load(good) as data:
        config = json.loads(bytes(data["config"]).decode())

    with pytest.raises(FileNotFoundError, match="nothere.npz does not exist"):
        load(tmp_path / "nothere.npz")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load(tmp_path)
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match=r"text.npz is not a tinyvae checkpoint: not an .npz \(zip\) file"):
        load(tmp_path / "text.npz")
    (tmp_path / "half.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="half.npz"):
        load(tmp_path / "half.npz")
    middle = len(raw) // 3  # inside the compressed data of a parameter: a zip whose CRC check fails
    (tmp_path / "flipped.npz").write_bytes(raw[:middle] + bytes([raw[middle] ^ 0xFF]) + raw[middle + 1:])
    with pytest.raises(ValueError, match="flipped.npz"):
        load(tmp_path / "flipped.npz")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="foreign.npz has no 'config' entry"):
        load(tmp_path / "foreign.npz")
    rewrite(good, tmp_path / "json.npz", config=np.frombuffer(b"{not json", dtype=np.uint8))
    with pytest.raises(ValueError, match="json.npz: its 'config' entry is not valid JSON"):
        load(tmp_path / "json.npz")
    rewrite(good, tmp_path / "v99.npz", config=config_bytes({**config, "format_version": 99}))
    with pytest.raises(ValueError, match="v99.npz has format version 99; this tinyvae reads version 1"):
        load(tmp_path / "v99.npz")
    rewrite(good, tmp_path / "noparam.npz", drop=("param/mu_head.W",))
    with pytest.raises(ValueError, match=r"noparam.npz: the parameter arrays .* missing \['param/mu_head.W'\]"):
        load(tmp_path / "noparam.npz")
    rewrite(good, tmp_path / "nobuf.npz", drop=("optim/v.3",))
    with pytest.raises(ValueError, match=r"nobuf.npz: the optimizer arrays .* missing \['optim/v.3'\]"):
        load(tmp_path / "nobuf.npz")
    rewrite(good, tmp_path / "shape.npz", **{"param/mu_head.b": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match=r"shape.npz: .*mu_head.b.* has shape \(5,\), expected \(3,\)"):
        load(tmp_path / "shape.npz")
    rewrite(good, tmp_path / "model.npz", config=config_bytes({**config, "model": {"model": "gan"}}))
    with pytest.raises(ValueError, match="model.npz: cannot rebuild the model"):
        load(tmp_path / "model.npz")
    assert load(good).optimizer is not None  # and the good file still loads
