"""The student side of grading: one child process per graded function (host-only: NumPy arrays on the CPU).

    python -I runner.py READ_FD WRITE_FD STUDENT_ROOT

This file is the ONLY grader code a student process sees (the grader copies it beside the job, or binds it into the
sandbox). It holds no solution and no expected value: it receives the cases' inputs over a pipe, runs the student's
code on them (``SCENARIOS``), and sends the raw outputs back. The trusted grader computes the expected outputs
itself, before this process starts, and compares them in its own process.

While one function is graded, the OTHER graded functions of the student's package are replaced by stubs that ask
the grader over the pipe ("what did the solution return for exactly these inputs?"). The grader answers only for
inputs the solution itself saw in the same case, so VAE.elbo_backward is graded on its own even when Dense.backward is
wrong, and the student process never holds a table of answers it could copy.

The grader imports this module too: the scenarios run there on the solution package to give the expected values.
Nothing here imports tinyvae at module level; the package is passed in.
"""
import io
import json
import math
import os
import random
import struct
import sys
import traceback

import numpy as np

MAX_MESSAGE = 64 << 20  # bytes: a bigger message from the student process is refused (and fails its row)


# ---------------------------------------------------------------------------------------------------------------
# Messages: a length, then an .npz (no pickles) holding a JSON header and the arrays it names
# ---------------------------------------------------------------------------------------------------------------

def encode(value, arrays):
    """A JSON-able form of ``value``; arrays go into ``arrays`` and are named by key."""
    if isinstance(value, np.ndarray) or type(value).__module__.startswith(("numpy", "cupy")) and hasattr(value,
                                                                                                      "shape"):
        key = f"a{len(arrays)}"
        arrays[key] = np.asarray(value)
        return {"__a": key}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return {"__t": [encode(v, arrays) for v in value]}
    if isinstance(value, dict):
        return {"__d": {str(k): encode(v, arrays) for k, v in value.items()}}
    return {"__other": type(value).__name__}


def decode(value, arrays):
    if isinstance(value, dict):
        if "__a" in value:
            return arrays[value["__a"]]
        if "__t" in value:
            return tuple(decode(v, arrays) for v in value["__t"])
        if "__d" in value:
            return {k: decode(v, arrays) for k, v in value["__d"].items()}
        return value
    return value


def pack(header, payload=None):
    arrays = {}
    body = {"header": header, "payload": encode(payload, arrays)}
    buf = io.BytesIO()
    np.savez(buf, __json__=np.frombuffer(json.dumps(body).encode(), dtype=np.uint8), **arrays)
    data = buf.getvalue()
    return struct.pack(">Q", len(data)) + data


def unpack(data):
    """(header, payload) from a message's bytes; raises ValueError on anything malformed."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        body = json.loads(arrays.pop("__json__").tobytes().decode())
        return body["header"], decode(body["payload"], arrays)
    except Exception as err:  # noqa: BLE001 - anything malformed is one kind of error for the caller
        raise ValueError(f"malformed message ({type(err).__name__})") from None


def read_exactly(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("pipe closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def receive(fd):
    (size,) = struct.unpack(">Q", read_exactly(fd, 8))
    if size > MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes (limit {MAX_MESSAGE})")
    return unpack(read_exactly(fd, size))


def send(fd, header, payload=None):
    data = memoryview(pack(header, payload))
    while data:
        data = data[os.write(fd, data):]


# ---------------------------------------------------------------------------------------------------------------
# The scenarios: what each graded function is asked to do, on the solution (grader) or the student's code (here)
# ---------------------------------------------------------------------------------------------------------------

def _set(param, value, grad):
    param.data[...] = value
    param.grad[...] = grad  # non-zero: a backward that assigns instead of adding is caught


def _forward_backward(layer, p, a):
    """A layer with weights W, b and non-zero starting gradients: one forward, one backward; dx and the grads."""
    layer.input_grad = p["input_grad"]
    _set(layer.W, a["W"], a["gW"])
    _set(layer.b, a["b"], a["gb"])
    layer.forward(a["x"])
    dx = layer.backward(a["dout"])
    return {"dx": dx, "W.grad": layer.W.grad, "b.grad": layer.b.grad}


def dense(tv, p, a):
    return _forward_backward(tv.Dense(p["in"], p["out"], dtype="float64"), p, a)


def activation(tv, p, a):
    module = getattr(tv, p["name"])(**p.get("kwargs", {}))
    module.forward(a["x"])
    return {"dx": module.backward(a["dout"])}


def bce(tv, p, a):
    value, grad = tv.losses.bce_with_logits(a["logits"], a["target"])
    per_example = tv.losses.bce_with_logits_per_example(a["logits"], a["target"])
    return {"value": value, "dlogits": grad, "per-example values": per_example}


def kl(tv, p, a):
    value, dmu, dlogvar = tv.losses.gaussian_kl(a["mu"], a["logvar"])
    return {"value": value, "dmu": dmu, "dlogvar": dlogvar,
            "per-example values": tv.losses.gaussian_kl_per_example(a["mu"], a["logvar"])}


def softmax_ce(tv, p, a):
    value, grad = tv.losses.softmax_cross_entropy(a["logits"], a["labels"])
    per_example = tv.losses.softmax_cross_entropy_per_example(a["logits"], a["labels"])
    return {"value": value, "dlogits": grad, "per-example values": per_example}


def disc_loss(tv, p, a):
    value, dreal, dfake = tv.gan.discriminator_loss(a["real"], a["fake"])
    return {"value": value, "dreal": dreal, "dfake": dfake}


def iwae(tv, p, a):
    value, grad = tv.losses.iwae_loss(a["log_w"])
    return {"value": value, "dlog_w": grad, "per-example values": tv.losses.iwae_loss_per_example(a["log_w"])}


def reparam(tv, p, a):
    layer = tv.Reparameterize()
    layer.forward(a["mu"], a["logvar"], eps=a["eps"])
    dmu, dlogvar = layer.backward(a["dz"])
    return {"dmu": dmu, "dlogvar": dlogvar}


def vae(tv, p, a):
    model = tv.VAE(rng=1, dtype="float64", **p["kwargs"])
    for name, param in model.named_parameters():
        _set(param, a[f"{name}"], a[f"{name}.grad"])
    model.loss(a["x"], eps=a["eps"])
    model.backward()
    return {f"{name}.grad": param.grad for name, param in model.named_parameters()}


def adam(tv, p, a):
    """The parameters after each of several Adam.step calls, and adam_reference's trajectory on the same grads."""
    starts = [a[f"p{j}"] for j in range(p["n_params"])]
    params = [tv.Parameter(s.copy()) for s in starts]
    opt = tv.Adam(params, **p["config"])
    out = {}
    for t in range(p["steps"]):
        for j, param in enumerate(params):
            param.grad[...] = a[f"g{t}_{j}"]
        opt.step()
        for j, param in enumerate(params):
            out[f"Adam.step p{j} after step {t + 1}"] = param.data.copy()
    for j, start in enumerate(starts):
        w, m, v = start.copy(), np.zeros_like(start), np.zeros_like(start)
        for t in range(p["steps"]):
            w, m, v = tv.optim.adam_reference(w, a[f"g{t}_{j}"], m, v, t + 1, **p["config"])
        out[f"adam_reference p{j} after {p['steps']} steps"] = w
    return out


def col2im(tv, p, a):
    cols = a["cols"]
    if p["unfolded"]:  # the (N*OH*OW, C, kh, kw) view the layers pass
        cols = cols.reshape(cols.shape[0], p["x_shape"][1], p["k"], p["k"])
    return {"x": tv.conv.col2im(cols, tuple(p["x_shape"]), p["k"], p["k"], p["stride"], p["padding"])}


def conv2d(tv, p, a):
    layer = tv.Conv2d(p["c"], p["f"], p["k"], stride=p["stride"], padding=p["padding"], dtype="float64")
    return _forward_backward(layer, p, a)


SCENARIOS = {"dense": dense, "activation": activation, "bce": bce, "kl": kl, "reparam": reparam,
             "softmax_ce": softmax_ce, "iwae": iwae, "disc_loss": disc_loss, "vae": vae,
             "adam": adam, "col2im": col2im, "conv2d": conv2d}


# ---- CS236 homework 2: the log-mixture density's gradient, and one M2 loss and backward ----
def mixture(tv, p, a):
    dz, dmeans, dvariances = tv.gmvae.log_mixture_density_backward(a["dlogp"], a["z"], a["means"], a["variances"])
    return {"dz": dz, "dmeans": dmeans, "dvariances": dvariances}


def ssvae(tv, p, a):
    model = tv.SSVAE(rng=1, dtype="float64", **p["kwargs"])
    for name, param in model.named_parameters():
        _set(param, a[f"{name}"], a[f"{name}.grad"])
    model.loss(a["x"], a["xl"], a["yl"], eps=a["eps"])
    model.backward()
    return {f"{name}.grad": param.grad for name, param in model.named_parameters()}


SCENARIOS.update({"mixture": mixture, "ssvae": ssvae})


def run_case(tv, scenario, params, arrays):
    """The scenario's outputs, with every array copied (a later step cannot change what was returned).

    It runs in plain mode (``tv.use_plain``), the student copy's default, whoever runs it: the solution in the
    grader then calls the same functions, with the same inputs, as the student's copy does, so that the answers
    the grader records for the stubs are the ones the student's calls ask for (a fast path can take another road,
    the SSVAE's split encoder for one). The mode it found is restored afterwards."""
    params = dict(params)
    if "config" in params and "betas" in params["config"]:
        params["config"] = dict(params["config"], betas=tuple(params["config"]["betas"]))
    was_plain = tv.backend.plain()
    tv.use_plain(True)
    try:
        out = SCENARIOS[scenario](tv, params, {k: v.copy() for k, v in arrays.items()})
    finally:
        tv.use_plain(was_plain)
    return {k: (np.array(v, copy=True) if hasattr(v, "shape") else v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------------------------------
# Comparing (in the grader's process, and in the handout's self-check)
# ---------------------------------------------------------------------------------------------------------------

def rel_error(got, expected):
    """max |a - b| / max(1e-8, |a| + |b|) (CS231n's), inf for a non-finite or wrongly shaped answer."""
    if expected is None:
        return 0.0 if got is None else math.inf
    if isinstance(expected, float):
        try:
            got = float(got)
        except (TypeError, ValueError):
            return math.inf
        if not math.isfinite(got):
            return math.inf
        if abs(expected) < 1e-12:  # the KL at mu = 0, logvar = 0 is exactly 0: an absolute error there
            return abs(got)
        return abs(got - expected) / max(1e-8, abs(got) + abs(expected))
    if not isinstance(got, np.ndarray) or got.shape != expected.shape or got.dtype.kind not in "fiu":
        return math.inf
    got = got.astype(np.float64)
    if not np.all(np.isfinite(got)):
        return math.inf
    return float(np.max(np.abs(got - expected) / np.maximum(1e-8, np.abs(got) + np.abs(expected)))) \
        if got.size else 0.0


def why(got, expected):
    """What is wrong with an answer's type, shape or finiteness ("" when only its values can be off)."""
    if expected is None:
        return "should be None" if got is not None else ""
    if isinstance(expected, float):
        return "" if isinstance(got, (int, float, np.ndarray)) else f"expected a float, got {type(got).__name__}"
    if not isinstance(got, np.ndarray):
        return f"expected an array of shape {expected.shape}, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"has shape {got.shape}, expected {expected.shape}"
    return "is not finite" if got.dtype.kind in "fiu" and not np.all(np.isfinite(got)) else ""


# ---------------------------------------------------------------------------------------------------------------
# Describing a student's exception without trusting it
# ---------------------------------------------------------------------------------------------------------------

def describe(err, student_pkg):
    """"Name: first line of the message (file, line)"; never raises, whatever the exception does."""
    try:
        name = type(err).__name__
    except BaseException:  # noqa: BLE001
        name = "exception"
    try:
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    except BaseException:  # noqa: BLE001 - a __str__ that raises still gives a row
        text = "(its message could not be printed)"
    note = f"{name}: {text}".rstrip(": ") if name != "NotImplementedError" else "NotImplementedError"
    try:
        frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename.startswith(student_pkg)]
        if frames:
            note += f" ({os.path.basename(frames[-1].filename)}, line {frames[-1].lineno})"
    except BaseException:  # noqa: BLE001
        pass
    return note


# ---------------------------------------------------------------------------------------------------------------
# The child process
# ---------------------------------------------------------------------------------------------------------------

class Oracle:
    """Stubs for the other graded functions: each call asks the grader for the solution's answer to these inputs."""

    def __init__(self, rfd, wfd):
        self.rfd, self.wfd = rfd, wfd

    def stub(self, entry, qualname, is_method):
        def call(*args, **kwargs):
            own = list(args[0].parameters()) if is_method and hasattr(args[0], "parameters") else []
            request = {"args": args[1:] if is_method else args, "kwargs": kwargs,
                       "params": [p.data for p in own]}
            send(self.wfd, {"kind": "call", "entry": entry, "qualname": qualname}, request)
            header, reply = receive(self.rfd)
            if header.get("kind") != "answer":
                raise RuntimeError(f"{qualname} was called with inputs that differ from the correct ones (while "
                                   "one function is graded, the others give correct answers for correct inputs "
                                   "only): check what your code passes to it")
            result, increments = reply
            for p, inc in zip(own, increments):
                p.grad[...] += inc
            return result
        call.__name__ = qualname.split(".")[-1]
        call.__qualname__ = qualname
        return call

    def install(self, tv, targets):
        """Replace each (entry, file, qualname) in the student's modules, and every name bound to the original."""
        for entry, file, qualname in targets:
            module = sys.modules.get(f"tinyvae.{file[:-3]}")
            if module is None:
                continue
            *path, attr = qualname.split(".")
            owner = module
            for part in path:
                owner = getattr(owner, part, None)
            if owner is None or attr not in vars(owner):
                continue
            original = vars(owner)[attr]
            stub = self.stub(entry, qualname, bool(path))
            setattr(owner, attr, stub)
            if not path:  # `from .losses import gaussian_kl` elsewhere binds the original too
                for name, mod in list(sys.modules.items()):
                    if name.startswith("tinyvae.") and mod is not None:
                        for key, value in list(vars(mod).items()):
                            if value is original:
                                setattr(mod, key, stub)


def seed_everything(seed):
    """Every global generator a student might touch, seeded: a flaky bug gives the same grade for the same seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)


def hide_other_copies(student_root):
    """Take every other tinyvae off the import machinery: an editable install's finder, and any sys.path entry
    (but a site-packages folder, which NumPy needs) that holds a tinyvae package, such as the solution's checkout."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    keep = []
    for p in sys.path:
        other = p and os.path.isdir(os.path.join(p, "tinyvae")) and os.path.realpath(p) != os.path.realpath(
            student_root)
        if not other or p.rstrip(os.sep).endswith(("site-packages", "dist-packages")):
            keep.append(p)
    sys.path[:] = [student_root] + keep


def child(rfd, wfd, student_root):
    send(wfd, {"kind": "ready"})  # before any student code: tells the grader that this machine can run the job
    hide_other_copies(student_root)
    header, job = receive(rfd)
    student_pkg = os.path.join(os.path.realpath(student_root), "tinyvae") + os.sep
    seed_everything(job["seed"])
    results = []
    try:
        import importlib
        tv = importlib.import_module("tinyvae")
        if not os.path.realpath(tv.__file__).startswith(student_pkg):
            raise ImportError(f"`import tinyvae` found {tv.__file__}, not the submission's copy")
        for name in job["modules"]:
            importlib.import_module(f"tinyvae.{name}")
        tv.use("numpy")
        Oracle(rfd, wfd).install(tv, job["stubs"])
    except BaseException as err:  # noqa: BLE001 - a copy that does not import fails every case of this row
        send(wfd, {"kind": "result", "import_error": "the package does not import: "
                   + describe(err, student_pkg)}, [])
        return
    for i, (params, arrays) in enumerate(job["cases"]):
        seed_everything(job["seed"] + i)
        tv.backend.seed(job["seed"] + i)
        try:
            results.append({"ok": run_case(tv, job["scenario"], params, arrays)})
        except BaseException as err:  # noqa: BLE001 - sys.exit, KeyboardInterrupt, anything: this case fails
            results.append({"error": describe(err, student_pkg)})
    send(wfd, {"kind": "result"}, results)


if __name__ == "__main__":
    child(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
    sys.stdout.flush()
    os._exit(0)
