"""The array-module switch: the only module that imports NumPy or CuPy for array math.

Every other file asks this one for the active array module (``get_xp()``) and for arrays made on the active
device (``zeros``, ``asarray``, ``Generator``), so one call switches the whole library:

    tinyvae.use("numpy")    # the default: NumPy on the CPU
    tinyvae.use("cupy")     # CuPy on a CUDA GPU
    tinyvae.use("strict")   # array-api-strict arrays on a virtual non-CPU device (a CPU-only test backend)

``TINYVAE_BACKEND`` (numpy | cupy | strict), ``TINYVAE_DTYPE`` (float32 | float64) and ``TINYVAE_PLAIN`` (1: every
``_fast`` twin runs its plain formula, see ``use_plain``) are read at import.

The "strict" backend exists to prove the CuPy path clean without a GPU: its arrays live on
``array_api_strict.Device("device1")``, so a stray ``numpy`` call, an implicit host conversion, or an array
created without going through this module (and so on the wrong device) raises instead of silently working.
"""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np

from .errors import TinyVAEError

BACKENDS = ("numpy", "cupy", "strict")
DTYPES = ("float32", "float64")


class BackendUnavailable(TinyVAEError, RuntimeError):
    """The requested backend cannot run here (a package or a device is missing)."""


class _State:
    name = "numpy"
    xp = np
    device = None          # array_api_strict.Device for "strict"; None elsewhere (the current device)
    array_type = np.ndarray
    dtype = "float32"      # the default floating dtype, by name
    rng = None             # the global generator, made lazily for the active backend
    plain = False          # plain mode: every _fast twin runs its plain formula (use_plain)


_state = _State()


def _load_cupy():
    try:
        import cupy
    except ImportError as err:
        raise BackendUnavailable(
            "backend 'cupy': CuPy is not installed. Install it with pip install 'tinyvae[gpu]' "
            "(CuPy for CUDA 12) or pip install cupy-cuda13x (CUDA 13), or use tinyvae.use('numpy')."
        ) from err
    try:
        count = cupy.cuda.runtime.getDeviceCount()
        reason = "no CUDA device is visible"
    except Exception as err:  # CUDARuntimeError, a missing driver library, ...
        count, reason = 0, f"the CUDA runtime reports: {err}"
    if count == 0:
        raise BackendUnavailable(
            f"backend 'cupy': CuPy is installed but found no usable CUDA device ({reason}). Check the GPU "
            "driver with nvidia-smi and CUDA_VISIBLE_DEVICES, or use tinyvae.use('numpy')."
        )
    return cupy


def _load_strict():
    try:
        import array_api_strict
    except ImportError as err:
        raise BackendUnavailable(
            "backend 'strict': array-api-strict is not installed. Install it with pip install 'tinyvae[test]'."
        ) from err
    return array_api_strict


def use(name: str) -> None:
    """Make ``name`` ("numpy", "cupy" or "strict") the active backend for every array tinyvae creates."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
    if name == "numpy":
        xp, device, array_type = np, None, np.ndarray
    elif name == "cupy":
        xp = _load_cupy()
        device, array_type = None, xp.ndarray
    else:
        xp = _load_strict()
        device = xp.Device("device1")
        array_type = type(xp.asarray(0.0, device=device))
    _state.name, _state.xp, _state.device, _state.array_type = name, xp, device, array_type
    _state.rng = None


def get_xp():
    """The active array module: numpy, cupy or array_api_strict."""
    return _state.xp


def backend_name() -> str:
    return _state.name


def use_plain(flag: bool = True) -> None:
    """Plain mode on (True) or off (False). In plain mode every ``_fast`` twin (``losses.bce_with_logits_fast``,
    ``optim.adam_fast``, ``reparam.reparameterize_fast``, the CuPy kernels, ...) calls its plain formula instead,
    and optimizers update parameter by parameter with ``adam_reference`` / ``sgd_reference``: a debugger stepping
    through ``fit`` then reaches the functions a student reads. The numbers agree with the fast mode's to rounding.
    ``TINYVAE_PLAIN=1`` turns it on at import."""
    _state.plain = bool(flag)


def plain() -> bool:
    """True in plain mode (``use_plain``): each ``_fast`` twin checks this first and runs its plain formula."""
    return _state.plain


def fast_gpu() -> bool:
    """True where the fused CuPy kernels run: the cupy backend, outside plain mode."""
    return _state.name == "cupy" and not _state.plain


def set_default_dtype(dtype) -> None:
    """Set the floating dtype ("float32" or "float64") that layers and models use when given none, and that
    ``asarray`` gives to Python floats (arrays keep their own dtype)."""
    _state.dtype = dtype_name(dtype)


def default_dtype():
    """The default floating dtype as an object of the active array module."""
    return getattr(_state.xp, _state.dtype)


# (type, dtype) -> name, remembered: NumPy's dtype.name is slow and layers ask on every call. The type comes first
# so that dtypes of two libraries are never compared with each other (array-api-strict warns when they are).
_DTYPE_NAMES = {}


def dtype_name(dtype) -> str:
    """'float32' or 'float64' for any spelling of those dtypes (string, NumPy, CuPy or array-api-strict)."""
    if dtype is None:
        return _state.dtype
    key = (type(dtype), dtype)
    try:
        return _DTYPE_NAMES[key]
    except (KeyError, TypeError):  # not seen yet, or not hashable
        pass
    name = dtype if isinstance(dtype, str) else str(getattr(dtype, "name", None) or dtype)
    name = name.rsplit(".", 1)[-1].strip("'>")  # "<class 'numpy.float32'>", "array_api_strict.float64"
    if name not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    try:
        _DTYPE_NAMES[key] = name
    except TypeError:
        pass
    return name


def resolve_dtype(dtype=None):
    """The active module's dtype object for ``dtype`` (None means the default)."""
    return getattr(_state.xp, dtype_name(dtype))


def is_array(a) -> bool:
    """True when ``a`` is an array of the active backend (on its device)."""
    return isinstance(a, _state.array_type)


def is_floating(a) -> bool:
    return a.dtype == _state.xp.float32 or a.dtype == _state.xp.float64


def to_numpy(a) -> np.ndarray:
    """Copy any array (NumPy, CuPy, array-api-strict, or a nested list) to a NumPy array on the host."""
    if isinstance(a, np.ndarray):
        return a
    if _state.name == "cupy" and isinstance(a, _state.array_type):  # CuPy's arrays (or the tests' stand-in's)
        return a.get()
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    if type(a).__module__.startswith("array_api_strict"):
        cpu = sys.modules["array_api_strict"].Device("CPU_DEVICE")
        return np.asarray(a.to_device(cpu))
    return np.asarray(a)


def asarray(a, dtype=None):
    """``a`` as an array of the active backend on its device.

    ``dtype`` None keeps an array's dtype, and gives Python floats (a nested list, say) the default dtype.
    Arrays of another backend are moved through the host, so this is also how data moves between NumPy and the GPU.
    """
    xp = _state.xp
    if not is_array(a):
        from_python = not hasattr(a, "dtype")
        a = to_numpy(a)
        if dtype is None and from_python and a.dtype == np.float64:
            dtype = _state.dtype
    target = None if dtype is None else resolve_dtype(dtype)
    if _state.device is not None:
        return xp.asarray(a, dtype=target, device=_state.device)
    return xp.asarray(a, dtype=target)


def _place(kwargs):
    if _state.device is not None:
        kwargs["device"] = _state.device
    return kwargs


def zeros(shape, dtype=None):
    return _state.xp.zeros(shape, **_place({"dtype": resolve_dtype(dtype)}))


def ones(shape, dtype=None):
    return _state.xp.ones(shape, **_place({"dtype": resolve_dtype(dtype)}))


def empty(shape, dtype=None):
    return _state.xp.empty(shape, **_place({"dtype": resolve_dtype(dtype)}))


def full(shape, value, dtype=None):
    return _state.xp.full(shape, value, **_place({"dtype": resolve_dtype(dtype)}))


def arange(n):
    """0, 1, ..., n - 1 as integers on the active device (class indices, one-hot columns)."""
    return _state.xp.arange(int(n), **_place({}))


def linspace(start, stop, num, dtype=None):
    return _state.xp.linspace(start, stop, num, **_place({"dtype": resolve_dtype(dtype)}))


def astype(a, dtype):
    """``a`` converted to ``dtype`` (e.g. a boolean mask to 0.0/1.0 floats)."""
    xp = _state.xp
    dtype = resolve_dtype(dtype) if isinstance(dtype, str) else dtype
    return xp.astype(a, dtype) if hasattr(xp, "astype") else a.astype(dtype)


def copy(a):
    """A new array with the same values, dtype and device."""
    return a.copy() if _state.name == "cupy" else _state.xp.asarray(a, copy=True)


def concat(arrays, axis=0):
    """Join arrays along ``axis`` (``concat`` in the array API standard, ``concatenate`` in older NumPy/CuPy)."""
    xp = get_xp()
    return (xp.concat if hasattr(xp, "concat") else xp.concatenate)(list(arrays), axis=axis)


def permute(a, axes):
    """``a`` with its axes reordered (a view where the backend can): numpy.transpose under its Array API name."""
    xp = _state.xp
    return xp.permute_dims(a, axes) if hasattr(xp, "permute_dims") else xp.transpose(a, axes)


def sliding_windows(x, kh, kw, stride):
    """Every kh x kw window of a 4-D array x (N, C, H, W), taken every ``stride`` pixels: shape (N, C, OH, OW, kh, kw)
    with OH = (H - kh) // stride + 1 (and OW likewise), window[n, c, i, j] = x[n, c, i*s:i*s+kh, j*s:j*s+kw].

    On NumPy and CuPy this is a strided VIEW of x (no copy; never write into it: windows overlap). The strict
    backend has no strided views, so it stacks the kh * kw shifted slices instead (a copy with the same values).
    """
    n, c, h, w = (int(d) for d in x.shape)
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    xp = _state.xp
    if _state.name in ("numpy", "cupy"):
        s = x.strides
        shape, strides = (n, c, oh, ow, kh, kw), (s[0], s[1], s[2] * stride, s[3] * stride, s[2], s[3])
        if _state.name == "numpy":
            return np.lib.stride_tricks.as_strided(x, shape, strides, writeable=False)
        return xp.lib.stride_tricks.as_strided(x, shape, strides)
    rows = [xp.stack([x[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
                      for j in range(kw)], axis=-1) for i in range(kh)]
    return xp.stack(rows, axis=-2)


def cache_block(dtype) -> int | None:
    """How many elements of ``dtype`` a loop of many element-wise passes should take at a time (Adam's update).

    256 KB on the CPU, so that the four or five arrays of one block stay in a core's L2 cache from one pass to the
    next; None (everything at once) on a GPU, where each pass is a kernel launch and fewer launches win.
    """
    if _state.name == "cupy":
        return None
    return (256 * 1024) // (4 if dtype_name(dtype) == "float32" else 8)


def synchronize() -> None:
    """Wait for queued GPU work (a no-op on the CPU backends); call before reading a timer."""
    if _state.name == "cupy":
        _state.xp.cuda.get_current_stream().synchronize()


def _seed_int(seed) -> int:
    """One 63-bit integer from an int or a tuple of ints (e.g. (seed, epoch)), stable across runs."""
    words = list(seed) if isinstance(seed, (tuple, list)) else [seed]
    # The words after the first are a spawn key, NumPy's way to derive independent streams. As plain entropy,
    # [seed, 0] would hash like [seed] (SeedSequence pads its pool with zeros): epoch 0 would replay `seed`.
    sequence = np.random.SeedSequence(words[:1], spawn_key=words[1:])
    lo, hi = (int(w) for w in sequence.generate_state(2, dtype=np.uint32))
    return (hi << 31) | (lo >> 1)


class Generator:
    """A seeded random generator whose draws land on the active backend's device.

    ``seed`` is an int, a tuple of ints (``(seed, epoch)`` gives an independent stream per epoch) or None
    (fresh entropy). The same seed gives the same numbers on the same backend.
    """

    def __init__(self, seed=None):
        self.backend = _state.name
        self.seed = seed
        self._host_seed = None if seed is None else _seed_int(seed)
        self._host = np.random.default_rng(self._host_seed)
        self._device_rng = None  # CuPy's, made on first use (see _device)

    # States of the device generator: 2**14 Philox states are 1 MB, made in one short launch. CuPy's default_rng
    # builds a 270,336-state XORWOW generator (13 MB, with a long skip-ahead per state) for every Generator, that is
    # for every epoch, every evaluate and every model built with a seed.
    DEVICE_STATES = 2**14

    @property
    def _device(self):
        """CuPy's Generator, which draws on the device (standard_normal, random); None on the other backends.
        Permutations stay on the host (CuPy's Generator has none)."""
        if self.backend != "cupy":
            return None
        if self._device_rng is None:
            random = _state.xp.random
            bits = random.Philox4x3210(self._host_seed, size=self.DEVICE_STATES)
            self._device_rng = random.Generator(bits)
        return self._device_rng

    def _check(self):
        if self.backend != _state.name:
            raise RuntimeError(
                f"this Generator was made for the {self.backend!r} backend but {_state.name!r} is active: "
                "make a new one with tinyvae.Generator(seed) after tinyvae.use(...)"
            )

    def standard_normal(self, shape, dtype=None):
        """Draws from N(0, 1) of the given shape."""
        self._check()
        dt = dtype_name(dtype)
        if self._device is not None:
            return self._device.standard_normal(shape, dtype=dt)
        return asarray(self._host.standard_normal(shape, dtype=dt))

    def random(self, shape, dtype=None):
        """Draws from the uniform distribution on [0, 1)."""
        self._check()
        dt = dtype_name(dtype)
        if self._device is not None:
            return self._device.random(shape, dtype=dt)
        return asarray(self._host.random(shape, dtype=dt))

    def permutation(self, n: int):
        """A random permutation of range(n) as an integer index array on the device (drawn on the host)."""
        self._check()
        return asarray(self._host.permutation(n))

    def __repr__(self):
        return f"Generator(seed={self.seed!r}, backend={self.backend!r})"


def seed(value) -> None:
    """Reseed the global generator that draws when a function is given ``rng=None``."""
    _state.rng = Generator(value)


def as_generator(rng=None) -> Generator:
    """``rng`` as a Generator: a Generator itself, an int seed, or None for the global generator (seed 0)."""
    if isinstance(rng, Generator):
        rng._check()
        return rng
    if rng is None:
        if _state.rng is None or _state.rng.backend != _state.name:
            _state.rng = Generator(0)
        return _state.rng
    if isinstance(rng, (int, tuple)) and not isinstance(rng, bool):
        return Generator(rng)
    raise TypeError(f"rng must be a tinyvae.Generator, an int seed or None, not {type(rng).__name__}")


def _from_environment():
    """Apply TINYVAE_BACKEND and TINYVAE_DTYPE. A bad value (an unknown name, CuPy without a GPU) warns and keeps
    the default, so ``import tinyvae`` never fails because of them and ``tinyvae.use`` / ``--backend`` still work."""
    name = os.environ.get("TINYVAE_BACKEND", "").strip().lower()
    if name:
        try:
            use(name)
        except (ValueError, BackendUnavailable) as err:
            warnings.warn(f"TINYVAE_BACKEND={name} ignored, using numpy: {err}", RuntimeWarning, stacklevel=3)
    if os.environ.get("TINYVAE_PLAIN", "").strip().lower() in ("1", "true", "yes", "on"):
        use_plain(True)
    dtype = os.environ.get("TINYVAE_DTYPE", "").strip().lower()
    if dtype:
        try:
            set_default_dtype(dtype)
        except ValueError as err:
            warnings.warn(f"TINYVAE_DTYPE={dtype} ignored, using float32: {err}", RuntimeWarning, stacklevel=3)


_from_environment()
