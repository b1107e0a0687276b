"""A CuPy stand-in: NumPy arrays behind the part of CuPy's module surface that tinyvae uses. Host-only test code.

The library never imports this file. The tests install it (``install()``) in place of the real module, so that
``tinyvae.use("cupy")`` runs tinyvae's own CuPy code paths (``backend_name() == "cupy"``: every ``_fast`` twin,
every fused kernel, every ``is_cupy`` branch) on a machine without a GPU. What it imitates, and checks:

- ``ndarray``: a wrapper around a NumPy array (not a subclass), so NumPy refuses it as it refuses CuPy's arrays
  (``numpy.asarray(a)`` raises; ``.get()`` copies to the host); mixing it with a NumPy array raises TypeError.
- Device scalars: ``float()``, ``int()``, ``bool()`` (an ``if`` on a device value), ``__index__``, ``.item()``,
  ``.tolist()`` and ``.get()`` are host syncs on a GPU. Each one is counted (``counts["syncs"]``); inside a
  ``no_sync()`` block each one raises ``HiddenSync``, so a test can prove that a training step never waits.
- ``ElementwiseKernel``: the CUDA C body is translated to NumPy (declarations, ``(T)`` casts, ``?:``, ``if``
  blocks, ``max``/``fabs``/``exp``/``log1p``/``tanh``/``sqrt``) and run element-wise, so a kernel's own source,
  not a copy of its formula, is what the tests compare with the plain NumPy formula. All ``T`` arguments must share
  one dtype, as CuPy requires.
- ``random``: ``default_rng``, ``Generator`` over ``XORWOW`` / ``Philox4x3210`` / ``MRG32k3a`` with only the
  methods CuPy's Generator has (``permutation``, ``choice``, ``shuffle``, ``normal`` raise AttributeError), and a
  stream that differs from NumPy's (a test that holds only for NumPy's draws fails here too).
- Launch counting: ``counts["launches"]`` grows by one per kernel, ufunc, reduction, matmul, copy or fancy index
  (views, reshapes and scalars are free), about what a GPU would launch.

What it cannot prove (only a card can): CUDA's own exp/tanh/log1p rounding, NVRTC compiling each kernel, real
asynchronous launches and streams, memory limits, and speed.
"""
import contextlib
import re
import types

import numpy as np

counts = {"launches": 0, "syncs": 0}
_strict = [False]


class HiddenSync(RuntimeError):
    """A device value was read on the host inside ``no_sync()`` (on a GPU: the step waits for the device)."""


@contextlib.contextmanager
def no_sync():
    """Make every host read of a device array raise ``HiddenSync`` inside the block."""
    old, _strict[0] = _strict[0], True
    try:
        yield
    finally:
        _strict[0] = old


def reset_counts():
    counts["launches"] = counts["syncs"] = 0


def _sync(what):
    if _strict[0]:
        raise HiddenSync(f"{what} reads a device array on the host inside a training step (a GPU would wait)")
    counts["syncs"] += 1


def _launch():
    counts["launches"] += 1


def _unwrap(obj):
    """Fake arrays to NumPy arrays (inside lists and tuples too); NumPy arrays refused, as CuPy refuses them."""
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, np.ndarray):
        raise TypeError(f"Unsupported type {type(obj)} (a NumPy array given to CuPy: move it with cupy.asarray)")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o) for o in obj)
    return obj


def _wrap(obj):
    if isinstance(obj, np.ndarray):
        return ndarray(obj)
    if isinstance(obj, np.generic) and not isinstance(obj, (np.str_, np.bytes_)):
        return ndarray(np.asarray(obj))  # CuPy's reductions give 0-d device arrays, never host scalars
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


# Functions and methods that make no new data on a GPU (views, shapes, dtypes): not counted as launches.
_FREE = {"reshape", "view", "ravel", "transpose", "swapaxes", "squeeze", "expand_dims", "permute_dims",
         "broadcast_to", "result_type", "shape", "ndim", "finfo", "iinfo", "dtype", "isscalar", "empty",
         "empty_like", "can_cast", "may_share_memory", "shares_memory"}


def _call(fn, name, args, kwargs):
    if name not in _FREE:
        _launch()
    return _wrap(fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))


class ndarray:
    """A device array: a NumPy array that refuses implicit host conversion and counts what it launches."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, a):
        self._a = a

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))

    def get(self, stream=None):
        """A NumPy copy on the host (a sync)."""
        _sync(".get()")
        return self._a.copy()

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    def __float__(self):
        _sync("float()")
        return float(self._a)

    def __int__(self):
        _sync("int()")
        return int(self._a)

    def __bool__(self):
        _sync("bool() (an if on a device value)")
        return bool(self._a)

    def __index__(self):
        _sync("an index from a device value")
        return self._a.__index__()

    def __complex__(self):
        _sync("complex()")
        return complex(self._a)

    def item(self):
        _sync(".item()")
        return self._a.item()

    def tolist(self):
        _sync(".tolist()")
        return self._a.tolist()

    def __format__(self, spec):
        _sync("format()")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (ndarray(np.asarray(row)) if not isinstance(row, np.ndarray) else ndarray(row) for row in self._a)

    def __repr__(self):
        return "fakecupy." + repr(self._a)

    def __getitem__(self, key):
        out = self._a[_unwrap(key)]
        if not (isinstance(out, np.ndarray) and np.may_share_memory(out, self._a)):
            _launch()  # a gather (fancy or boolean index) makes new data; a slice is a view
        return _wrap(out)

    def __setitem__(self, key, value):
        _launch()
        self._a[_unwrap(key)] = _unwrap(value)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _launch()
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        return _wrap(getattr(ufunc, method)(*_unwrap(inputs), **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        return _call(func, func.__name__, args, kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):  # NumPy's __array_interface__ and the like: CuPy's arrays have none
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)
        return lambda *args, **kwargs: _call(attr, name, args, kwargs)


def _binary(name):
    def op(self, other):
        if isinstance(other, np.ndarray):
            raise TypeError(f"Unsupported type {type(other)} (a NumPy array mixed with a CuPy array)")
        _launch()
        result = getattr(self._a, name)(_unwrap(other))
        return result if result is NotImplemented else _wrap(result)
    return op


def _inplace(name):
    def op(self, other):
        if isinstance(other, np.ndarray):
            raise TypeError(f"Unsupported type {type(other)} (a NumPy array mixed with a CuPy array)")
        _launch()
        getattr(self._a, name)(_unwrap(other))
        return self
    return op


def _unary(name):
    def op(self):
        _launch()
        return _wrap(getattr(self._a, name)())
    return op


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "lshift", "rshift"):
    setattr(ndarray, f"__{_name}__", _binary(f"__{_name}__"))
    setattr(ndarray, f"__r{_name}__", _binary(f"__r{_name}__"))
    setattr(ndarray, f"__i{_name}__", _inplace(f"__i{_name}__"))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binary(f"__{_name}__"))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__", _unary(f"__{_name}__"))


class _Namespace(types.ModuleType):
    """NumPy's functions (of ``source``), taking and giving fake arrays; NumPy's dtypes and constants as they are."""

    def __init__(self, name, source):
        super().__init__(name)
        self._source = source

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        attr = getattr(self._source, name)
        if isinstance(attr, type) or not callable(attr):
            return attr
        return lambda *args, **kwargs: _call(attr, name, args, kwargs)


def asarray(a, dtype=None, order=None):
    """A device array from a fake array (a cast if asked), a NumPy array or a nested list (a host-to-device copy)."""
    if isinstance(a, ndarray):
        if dtype is None or np.dtype(dtype) == a.dtype:
            return a
        _launch()
        return ndarray(a._a.astype(dtype))
    _launch()
    return ndarray(np.array(a, dtype=dtype, order=order or "K"))


def asnumpy(a, stream=None):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


# ---- ElementwiseKernel: the CUDA C body translated to NumPy ----------------------------------------------------

# CUDA's max and min are fmax and fmin: a NaN argument gives the other one (NumPy's maximum would give NaN).
_FUNCTIONS = {"max": "_np.fmax", "min": "_np.fmin", "fabs": "_np.abs", "exp": "_np.exp", "log": "_np.log",
              "log1p": "_np.log1p", "expm1": "_np.expm1", "tanh": "_np.tanh", "sqrt": "_np.sqrt"}


def _parse_params(text):
    params = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        words = part.split()
        if len(words) != 2:
            raise ValueError(f"ElementwiseKernel: cannot read the parameter {part!r} (expected 'T name')")
        params.append((words[0], words[1]))
    return params


def _expression(text):
    text = re.sub(r"\(\s*T\s*\)\s*([0-9.]+(?:[eE][-+]?[0-9]+)?|\w+)", r"_T(\1)", text)
    text = re.sub(r"\b(" + "|".join(_FUNCTIONS) + r")\s*\(", lambda m: _FUNCTIONS[m.group(1)] + "(", text)
    text = text.replace("&&", "&").replace("||", "|")
    if "?" in text:  # cond ? a : b, as the whole right-hand side
        cond, rest = text.split("?", 1)
        a, b = rest.split(":", 1)
        text = f"_np.where({_expression(cond)}, {_expression(a)}, {_expression(b)})"
    return text.strip()


def _statements(body, mask=None):
    """Python lines for the C statements of ``body`` (``if (c) { ... }`` blocks become masked assignments)."""
    lines = []
    while body.strip():
        body = body.strip()
        block = re.match(r"if\s*\((.*?)\)\s*\{(.*?)\}", body, re.S)
        if block:
            name = f"_m{len(lines)}"
            cond = _expression(block.group(1))
            lines.append(f"{name} = {cond}" if mask is None else f"{name} = ({mask}) & ({cond})")
            lines += _statements(block.group(2), name)
            body = body[block.end():]
            continue
        statement, _, body = body.partition(";")
        match = re.match(r"^(?:(?:const\s+)?(?:T|float|double|int|bool)\s+)?(\w+)\s*([-+*/]?=)\s*(.*)$",
                         statement.strip(), re.S)
        if not match:
            raise ValueError(f"ElementwiseKernel: cannot translate the statement {statement.strip()!r}")
        target, op, rhs = match.group(1), match.group(2), _expression(match.group(3))
        if op != "=":
            rhs = f"{target} {op[0]} ({rhs})"
        lines.append(f"{target} = {rhs}" if mask is None else f"{target} = _np.where({mask}, {rhs}, {target})")
    return lines


class ElementwiseKernel:
    """``cupy.ElementwiseKernel(in_params, out_params, operation, name)``, run by NumPy on the host."""

    def __init__(self, in_params, out_params, operation, name="kernel", **kwargs):
        self.inputs, self.outputs = _parse_params(in_params), _parse_params(out_params)
        self.name, self.operation = name, operation
        self.code = compile("\n".join(_statements(operation)), f"<kernel {name}>", "exec")

    def _dtype(self, args):
        """The dtype T stands for: that of the first array passed as T; every other T array must share it."""
        dtypes = {a.dtype for (kind, _), a in zip(self.inputs + self.outputs, args)
                  if kind == "T" and isinstance(a, ndarray)}
        if len(dtypes) != 1:
            raise TypeError(f"{self.name}: the arguments of type T have dtypes {sorted(map(str, dtypes))}; CuPy "
                            "needs exactly one")
        return dtypes.pop()

    def __call__(self, *args, size=None, stream=None):
        if len(args) not in (len(self.inputs), len(self.inputs) + len(self.outputs)):
            raise TypeError(f"{self.name}: expected {len(self.inputs)} inputs (and optionally "
                            f"{len(self.outputs)} outputs), got {len(args)} arguments")
        for a in args:
            if isinstance(a, np.ndarray):
                raise TypeError(f"{self.name}: Unsupported type {type(a)} (a NumPy array given to a kernel)")
        dtype = self._dtype(args)
        shape = np.broadcast_shapes(*(a.shape for a in args if isinstance(a, ndarray)))
        env = {"_np": np, "_T": dtype.type}
        kinds = lambda kind: dtype if kind == "T" else np.dtype(kind)  # noqa: E731 - T, or a named dtype
        for (kind, name), a in zip(self.inputs, args):
            env[name] = a._a if isinstance(a, ndarray) else kinds(kind).type(a)
        given = args[len(self.inputs):]
        outs = [given[i] if i < len(given) else ndarray(np.zeros(shape, kinds(kind)))
                for i, (kind, _) in enumerate(self.outputs)]
        for (_, name), out in zip(self.outputs, outs):
            env[name] = out._a.copy()
        with np.errstate(all="ignore"):  # inf and nan as CUDA gives them, without warnings
            exec(self.code, env)
        for (_, name), out in zip(self.outputs, outs):
            out._a[...] = env[name]
        _launch()
        return outs[0] if len(outs) == 1 else tuple(outs)


class ReductionKernel:
    """``cupy.ReductionKernel`` for sums (reduce expression ``a + b``, post-map ``y = a``), run by NumPy: the map
    expression is translated like an ElementwiseKernel's body, then summed along ``axis``."""

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name="reduce_kernel",
                 **kwargs):
        if reduce_expr.replace(" ", "") != "a+b" or post_map_expr.replace(" ", "") not in ("y=a", "y=a;"):
            raise NotImplementedError("the stand-in's ReductionKernel sums only (a + b, y = a)")
        self.inputs, self.name = _parse_params(in_params), name
        self.code = compile(_expression(map_expr), f"<reduction {name}>", "eval")

    def __call__(self, *args, axis=None, keepdims=False):
        elementwise = ElementwiseKernel.__new__(ElementwiseKernel)
        elementwise.inputs, elementwise.outputs, elementwise.name = self.inputs, [], self.name
        dtype = elementwise._dtype(args)
        env = {"_np": np, "_T": dtype.type}
        for (kind, name), a in zip(self.inputs, args):
            env[name] = a._a if isinstance(a, ndarray) else (dtype if kind == "T" else np.dtype(kind)).type(a)
        with np.errstate(all="ignore"):
            mapped = np.asarray(eval(self.code, env), dtype=dtype)
        shape = np.broadcast_shapes(*(a.shape for a in args if isinstance(a, ndarray)))
        _launch()
        return ndarray(np.sum(np.broadcast_to(mapped, shape), axis=axis, keepdims=keepdims, dtype=dtype))


# ---- random --------------------------------------------------------------------------------------------------

class _BitGenerator:
    """A cuRAND bit generator: ``size`` states (CuPy's default: one per thread of a full device launch)."""

    STATE_BYTES, DEFAULT_STATES = 48, 270_336

    def __init__(self, seed=None, *, size=-1):
        self.seed, self.size = seed, (self.DEFAULT_STATES if size == -1 else int(size))
        # Philox, not NumPy's default PCG64: a stream that differs from NumPy's for the same seed.
        self._np = np.random.Generator(np.random.Philox(None if seed is None else [int(seed), 0x0C0FFEE]))
        counts.setdefault("rng_state_bytes", 0)
        counts["rng_state_bytes"] += self.size * self.STATE_BYTES


class XORWOW(_BitGenerator):
    pass


class MRG32k3a(_BitGenerator):
    STATE_BYTES = 48


class Philox4x3210(_BitGenerator):
    STATE_BYTES = 64


class Generator:
    """``cupy.random.Generator``: only the methods CuPy's has (no permutation, choice, shuffle or normal)."""

    def __init__(self, bit_generator):
        self.bit_generator = bit_generator

    def _draw(self, fn, size, dtype):
        _launch()
        return ndarray(np.asarray(fn(size, dtype=np.dtype(dtype))))

    def random(self, size=None, dtype=np.float64, out=None):
        return self._draw(self.bit_generator._np.random, size, dtype)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        return self._draw(self.bit_generator._np.standard_normal, size, dtype)

    def standard_exponential(self, size=None, dtype=np.float64, method="zig", out=None):
        return self._draw(self.bit_generator._np.standard_exponential, size, dtype)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        _launch()
        return ndarray(self.bit_generator._np.uniform(low, high, size).astype(dtype))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        _launch()
        return ndarray(np.asarray(self.bit_generator._np.integers(low, high, size, dtype=dtype, endpoint=endpoint)))

    def __getattr__(self, name):
        raise AttributeError(f"'cupy.random.Generator' has no attribute {name!r} (CuPy's Generator lacks it)")


def _default_rng(seed=None):
    return Generator(XORWOW(seed))


# ---- the module --------------------------------------------------------------------------------------------------

class _Stream:
    def synchronize(self):
        pass  # an explicit wait, not a hidden sync


def _make_module():
    cupy = _Namespace("cupy", np)
    cupy.__file__ = __file__
    cupy.ndarray, cupy.asarray, cupy.asnumpy = ndarray, asarray, asnumpy
    cupy.array = lambda a, dtype=None, copy=True: asarray(a._a.copy() if isinstance(a, ndarray) else a, dtype)
    cupy.ElementwiseKernel, cupy.ReductionKernel = ElementwiseKernel, ReductionKernel
    cupy.linalg = _Namespace("cupy.linalg", np.linalg)
    random = types.ModuleType("cupy.random")
    random.Generator, random.default_rng = Generator, _default_rng
    random.XORWOW, random.MRG32k3a, random.Philox4x3210 = XORWOW, MRG32k3a, Philox4x3210
    cupy.random = random
    cuda = types.ModuleType("cupy.cuda")
    cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    cuda.get_current_stream = lambda: _Stream()
    cupy.cuda = cuda
    as_strided = lambda x, shape=None, strides=None: ndarray(  # noqa: E731
        np.lib.stride_tricks.as_strided(x._a, shape, strides))
    cupy.lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(as_strided=as_strided))
    return cupy


module = _make_module()


def vae_step_launches(batch=128, sizes=(784, 400, 20)):
    """The launches of one training step of the reference VAE (``sizes``: input, hidden, latent) under the
    stand-in: zero_grad, loss, backward and Adam's step, counted after a warm-up step (the first one builds the
    flat buffer and Adam's state). The caller must have installed the stand-in and made "cupy" active."""
    import tinyvae as tv

    model = tv.VAE(sizes[0], (sizes[1],), sizes[2], rng=0)
    opt = tv.Adam(model.parameters())
    x = tv.asarray(np.random.default_rng(0).random((batch, sizes[0]), dtype=np.float32))
    gen = tv.Generator(0)

    def step():
        opt.zero_grad()
        model.loss(x, rng=gen)
        model.backward()
        opt.step()

    step()
    before = counts["launches"]
    with no_sync():
        step()
    return counts["launches"] - before


def install(backend_module):
    """Make ``backend_module.use("cupy")`` load this stand-in; returns a function that undoes it."""
    original = backend_module._load_cupy
    backend_module._load_cupy = lambda: module

    def undo():
        backend_module._load_cupy = original
    return undo


__all__ = ["module", "install", "no_sync", "counts", "reset_counts", "HiddenSync", "ndarray"]
