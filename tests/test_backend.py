"""Tests for tinyvae.backend: choosing a backend, the missing-GPU messages, TINYVAE_BACKEND at import, seeded
generators, moving arrays between backends and the default dtype."""
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import tinyvae as tv
from tinyvae import backend as B


def _other(name):
    """Another CPU backend than ``name`` (to use a generator or an array where it does not belong)."""
    return "strict" if name != "strict" else "numpy"


# ---------------------------------------------------------------- choosing a backend

def test_use_of_an_unknown_name_lists_the_valid_ones(backend):
    with pytest.raises(ValueError, match=r"unknown backend 'tpu'.*numpy, cupy, strict"):
        tv.use("tpu")
    assert tv.backend_name() == backend  # a failed switch leaves the active backend alone


@pytest.mark.needs("array_api_strict")
def test_use_switches_the_array_module_and_back():
    tv.use("strict")
    assert tv.backend_name() == "strict"
    assert B.is_array(B.zeros((2,)))
    assert type(B.zeros((2,))).__module__.startswith("array_api_strict")
    tv.use("numpy")
    assert tv.get_xp() is np
    assert isinstance(B.zeros((2,)), np.ndarray)


@pytest.mark.backends("numpy")
def test_cupy_missing_names_the_pip_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` now raises ImportError, as where it is absent
    with pytest.raises(tv.BackendUnavailable, match=r"CuPy is not installed.*pip install 'tinyvae\[gpu\]'"):
        tv.use("cupy")
    assert tv.backend_name() == "numpy"


def _fake_cupy(get_device_count):
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    return fake


@pytest.mark.backends("numpy")
def test_cupy_without_a_device_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(lambda: 0))
    with pytest.raises(tv.BackendUnavailable, match="CuPy is installed but found no usable CUDA device") as err:
        tv.use("cupy")
    assert "not installed" not in str(err.value)  # installed and present are different facts
    assert tv.backend_name() == "numpy"


@pytest.mark.backends("numpy")
def test_cupy_with_a_broken_driver_reports_the_runtime_error(monkeypatch):
    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(no_driver))
    with pytest.raises(tv.BackendUnavailable, match=r"no usable CUDA device \(the CUDA runtime reports: "
                                                    r"cudaErrorInsufficientDriver"):
        tv.use("cupy")
    assert tv.backend_name() == "numpy"


def _import_with(env):
    """Import tinyvae in a fresh interpreter with extra environment variables; (returncode, stdout, stderr)."""
    code = "import tinyvae as tv; print(tv.backend_name(), tv.backend.dtype_name(None))"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TINYVAE_")}
    done = subprocess.run([sys.executable, "-c", code], env={**full_env, **env}, capture_output=True, text=True,
                          timeout=60)
    return done.returncode, done.stdout.strip(), done.stderr


@pytest.mark.backends("numpy")
@pytest.mark.needs("array_api_strict")
def test_tinyvae_backend_is_read_at_import():
    assert _import_with({})[:2] == (0, "numpy float32")
    assert _import_with({"TINYVAE_BACKEND": "strict"})[:2] == (0, "strict float32")
    assert _import_with({"TINYVAE_BACKEND": " Strict ", "TINYVAE_DTYPE": "float64"})[:2] == (0, "strict float64")


@pytest.mark.backends("numpy")
def test_invalid_environment_values_warn_and_keep_the_defaults():
    # A bad value must not break `import tinyvae` (so tinyvae.use / --backend can still choose): it warns, naming it.
    code, out, err = _import_with({"TINYVAE_BACKEND": "tpu"})
    assert (code, out) == (0, "numpy float32") and "Traceback" not in err
    assert "TINYVAE_BACKEND=tpu ignored" in err and "expected one of numpy, cupy, strict" in err
    code, out, err = _import_with({"TINYVAE_DTYPE": "float16"})
    assert (code, out) == (0, "numpy float32")
    assert "TINYVAE_DTYPE=float16 ignored" in err and "expected one of float32, float64" in err


# ---------------------------------------------------------------- generators

def test_same_seed_same_numbers():
    a, b = B.Generator(7), B.Generator(7)
    for draw in (lambda g: g.standard_normal((3, 4)), lambda g: g.random((5,)), lambda g: g.permutation(9)):
        np.testing.assert_array_equal(B.to_numpy(draw(a)), B.to_numpy(draw(b)))
    assert not np.array_equal(B.to_numpy(B.Generator(7).random((8,))), B.to_numpy(B.Generator(8).random((8,))))


def test_seed_tuples_give_independent_streams():
    draws = [B.to_numpy(B.Generator(seed).random((16,))) for seed in (3, (3, 0), (3, 1), (4, 0))]
    for i in range(len(draws)):
        for j in range(i):
            assert not np.array_equal(draws[i], draws[j])
    np.testing.assert_array_equal(draws[2], B.to_numpy(B.Generator((3, 1)).random((16,))))


def test_draws_have_the_requested_dtype_and_range(xp):
    g = B.Generator(0)
    assert g.standard_normal((2, 3)).dtype == xp.float32  # the default dtype
    assert g.standard_normal((2, 3), "float64").dtype == xp.float64
    u = B.to_numpy(g.random((1000,), "float64"))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert tuple(g.random((4, 1)).shape) == (4, 1)


@pytest.mark.parametrize("n", [1, 2, 10, 1000])
def test_permutation_is_a_permutation(n):
    perm = B.Generator(n).permutation(n)
    assert B.is_array(perm)
    np.testing.assert_array_equal(np.sort(B.to_numpy(perm)), np.arange(n))


@pytest.mark.needs("array_api_strict")
def test_a_generator_is_tied_to_its_backend(backend):
    g = B.Generator(0)
    tv.use(_other(backend))
    with pytest.raises(RuntimeError, match=f"made for the '{backend}' backend but '{_other(backend)}' is active"):
        g.standard_normal((2,))
    with pytest.raises(RuntimeError, match="made for the"):
        B.as_generator(g)


def test_global_seed_makes_default_draws_reproducible():
    tv.seed(11)
    w1 = B.to_numpy(tv.Dense(4, 3).W.data)
    tv.seed(11)
    w2 = B.to_numpy(tv.Dense(4, 3).W.data)
    np.testing.assert_array_equal(w1, w2)
    with pytest.raises(TypeError, match="rng must be a tinyvae.Generator, an int seed or None, not str"):
        B.as_generator("7")


# ---------------------------------------------------------------- arrays and dtypes

def test_asarray_and_to_numpy_round_trip(xp):
    host = np.arange(6, dtype=np.float64).reshape(2, 3) / 7
    a = tv.asarray(host)
    assert B.is_array(a) and a.dtype == xp.float64  # dtype None keeps the input's dtype
    back = tv.to_numpy(a)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host)
    b = tv.asarray(host, dtype="float32")
    assert b.dtype == xp.float32
    np.testing.assert_array_equal(tv.to_numpy(b), host.astype(np.float32))
    np.testing.assert_array_equal(tv.to_numpy([[1.0, 2.0]]), np.array([[1.0, 2.0]]))


@pytest.mark.backends("numpy")
@pytest.mark.needs("array_api_strict")
def test_arrays_move_between_numpy_and_strict():
    host = np.linspace(-1, 1, 12).reshape(3, 4)
    tv.use("strict")
    on_device = tv.asarray(host)
    assert type(on_device).__module__.startswith("array_api_strict")
    assert on_device.device == tv.get_xp().Device("device1")
    tv.use("numpy")
    moved_back = tv.asarray(on_device)  # another backend's array goes through the host
    assert isinstance(moved_back, np.ndarray)
    np.testing.assert_array_equal(moved_back, host)


def test_default_dtype_is_float32_and_float64_on_request(xp):
    assert tv.default_dtype() == xp.float32
    assert B.zeros((2,)).dtype == xp.float32
    assert tv.Dense(3, 2).W.data.dtype == xp.float32
    tv.set_default_dtype("float64")
    assert tv.default_dtype() == xp.float64
    for a in (B.zeros((2,)), B.ones((2,)), B.full((2,), 3.0), B.linspace(0.0, 1.0, 3), tv.Dense(3, 2).W.data,
              B.Generator(0).standard_normal((2,))):
        assert a.dtype == xp.float64
    tv.set_default_dtype(np.float32)  # any spelling of the two dtypes is accepted
    assert tv.default_dtype() == xp.float32
    assert B.dtype_name(xp.float64) == "float64"


def test_unsupported_dtype_is_a_clear_error():
    for bad in ("float16", "int32", np.int64):
        with pytest.raises(ValueError, match="unsupported dtype .*: expected one of float32, float64"):
            tv.set_default_dtype(bad)
    assert B.dtype_name(None) == "float32"
    with pytest.raises(ValueError, match="unsupported dtype 'half'"):
        tv.Dense(2, 2, dtype="half")


def test_copy_is_a_new_array_with_the_same_values(xp):
    a = B.Generator(0).random((3,), "float64")
    c = B.copy(a)
    a[0] = 5.0
    assert float(c[0]) != 5.0 and c.dtype == xp.float64 and B.is_array(c)


# ---------------------------------------------------------------- a real GPU (skipped where there is none)

@pytest.mark.gpu
@pytest.mark.backends("numpy")
def test_cupy_backend_gives_numpys_vae_gradients():
    """The same float64 VAE (weights copied over) gives the same objective and gradients on the GPU."""
    host = np.random.default_rng(0).random((4, 9))
    eps = np.random.default_rng(1).standard_normal((4, 3))
    results = {}
    state = None
    for name in ("numpy", "cupy"):
        tv.use(name)
        vae = tv.VAE(9, (6,), 3, dtype="float64", rng=0)
        if state is None:
            state = {k: tv.to_numpy(v) for k, v in vae.state_dict().items()}
        vae.load_state_dict(state)
        total = vae.loss(tv.asarray(host), eps=tv.asarray(eps)).total
        vae.backward()
        assert type(vae.mu_head.W.grad).__module__.startswith(name)
        results[name] = (total, [tv.to_numpy(p.grad) for p in vae.parameters()])
    assert results["cupy"][0] == pytest.approx(results["numpy"][0], rel=1e-12)
    for g_gpu, g_cpu in zip(results["cupy"][1], results["numpy"][1]):
        np.testing.assert_allclose(g_gpu, g_cpu, rtol=1e-10, atol=1e-14)
