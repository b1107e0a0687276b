"""The grading subprocess of ``tinyvae.instructor.assignment.grade``; run as a script, from the solution's package folder:

    python <solution>/tinyvae/instructor/runner.py --student DIR --out RESULTS.jsonl [--function-timeout S]

``import tinyvae`` is the student's copy in DIR (PYTHONPATH); the solution package this file sits in is loaded
beside it as ``tinyvae_reference``. Every MANIFEST function is checked on its own: the other listed functions of
the student's modules are swapped for the solution's while it runs. The numerical side (centered differences,
formulas, the objective being differentiated) comes only from the solution and from this file, so a change to the
student's gradcheck or forward passes cannot loosen a check. One JSON line per function goes to RESULTS, written as
it finishes, so a run cut short by a timeout still reports what it graded.
"""
import argparse
import importlib
import importlib.util
import json
import math
import signal
import sys
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # the solution package (this file sits in its instructor/)


class Wrong(Exception):
    """A returned value of the wrong kind or shape; the message is the row's note."""


class FunctionTimedOut(BaseException):
    """Raised by SIGALRM inside a function's checks (a BaseException so that ``except Exception`` cannot eat it)."""


class Ctx:
    """What a check needs: the two packages, the array module and a seeded generator (the solution's)."""

    def __init__(self, ref, stu, seed=0):
        self.ref, self.stu = ref, stu
        self.xp = ref.backend.get_xp()
        self.rng = ref.backend.Generator(seed)

    def normal(self, *shape, scale=1.0):
        return self.rng.standard_normal(shape, "float64") * scale

    def uniform(self, *shape):
        return self.rng.random(shape, "float64")

    def numeric(self, f, x):
        """The solution's centered-difference gradient of the scalar f at x (x perturbed in place and restored)."""
        return self.ref.gradcheck.numerical_gradient(f, x)

    def error(self, what, got, expected):
        """The relative error of an array the student returned; inf when it holds inf or nan."""
        if not isinstance(got, type(expected)):
            raise Wrong(f"{what}: expected an array of shape {tuple(expected.shape)}, got {type(got).__name__}")
        if tuple(got.shape) != tuple(expected.shape):
            raise Wrong(f"{what} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}")
        if not bool(self.xp.all(self.xp.isfinite(got))):
            return math.inf
        return self.ref.gradcheck.rel_error(got, expected)

    @staticmethod
    def as_float(what, got):
        try:
            return float(got)
        except (TypeError, ValueError):
            raise Wrong(f"{what}: expected a float, got {type(got).__name__}") from None

    def scalar_error(self, what, got, expected):
        """The relative error of a float the student returned; inf when it is inf or nan."""
        got = self.as_float(what, got)
        if not math.isfinite(got):
            return math.inf
        return abs(got - expected) / max(1e-8, abs(got) + abs(expected))


def _returns(value, n, call):
    if not isinstance(value, tuple) or len(value) != n:
        raise Wrong(f"{call} must return a tuple of {n}, got {type(value).__name__}")
    return value


def _share(stu_module, ref_module):
    """Point the solution's twin at the student module's parameter arrays (the same objects, so perturbing one
    perturbs both): the twin's forward is then the function the student's backward must differentiate."""
    stu, ref = list(stu_module.named_parameters()), list(ref_module.named_parameters())
    if [n for n, _ in stu] != [n for n, _ in ref]:
        raise Wrong(f"{type(stu_module).__name__} has parameters {[n for n, _ in stu]}, "
                    f"expected {[n for n, _ in ref]}")
    for (_, s), (_, r) in zip(stu, ref):
        r.data = s.data


def _module_errors(c, stu, ref, x, label):
    """Input and parameter gradients of the student's ``stu.backward`` against differences of ``ref.forward``.

    Every .grad starts from random values, so a backward that assigns instead of adding is caught.
    """
    _share(stu, ref)
    df = c.normal(*ref.forward(x).shape)
    params = list(stu.named_parameters())
    before = {}
    for name, p in params:
        p.grad[...] = c.normal(*p.shape)
        before[name] = c.ref.backend.copy(p.grad)
    stu.forward(x)
    dx = stu.backward(df)
    got = {name: p.grad - before[name] for name, p in params}

    def weighted(_):  # a float at once: Identity's forward returns x itself, which the differences perturb
        return float(c.xp.sum(ref.forward(x) * df))

    errors = [(f"dx ({label})", c.error("dx", dx, c.numeric(weighted, x)))]
    for name, p in params:
        numeric = c.numeric(weighted, p.data)
        errors.append((f"d{name} ({label})", c.error(f"d{name}", got[name], numeric)))
    return errors


def _away_from_kinks(c, x, margin=0.05):
    return c.xp.where(x >= 0, x + margin, x - margin)


def check_dense(c):
    errors = []
    for n, d_in, d_out, init in ((3, 7, 5, "pytorch"), (1, 4, 3, "he"), (2, 1, 6, "xavier")):
        layer = c.stu.layers.Dense(d_in, d_out, init=init, rng=d_in, dtype="float64")
        twin = c.ref.layers.Dense(d_in, d_out, dtype="float64")
        errors += _module_errors(c, layer, twin, c.normal(n, d_in), f"batch {n}, {d_in}->{d_out}")
    return errors


def activation_check(name, **kwargs):
    """The check of ``name``.backward: random inputs kept away from the kink at 0, batches of 4 and of 1."""
    def check(c):
        errors = []
        for shape in ((4, 6), (1, 5)):
            stu, ref = getattr(c.stu.activations, name)(**kwargs), getattr(c.ref.activations, name)(**kwargs)
            x = _away_from_kinks(c, c.normal(*shape, scale=2.0))
            errors += _module_errors(c, stu, ref, x, f"batch {shape[0]}")
        if name == "Softplus":  # exp(x) overflows far out: the stable sigmoid gives exactly 0 and 1 there
            x = c.ref.backend.asarray([[-800.0, -40.0, 0.3, 40.0, 800.0]], dtype="float64")
            dout = c.normal(1, 5)
            stu, ref = c.stu.activations.Softplus(), c.ref.activations.Softplus()
            stu.forward(x)
            ref.forward(x)
            errors.append(("dx (|x| up to 800)", c.error("dx", stu.backward(dout), ref.backward(dout))))
        return errors
    return check


def _bce_naive(c, logits, target):
    """-x log s - (1 - x) log(1 - s) with s = sigmoid(l), per element, straight from the definition.

    log s = -log1p(exp(-l)) and log(1 - s) = -log1p(exp(l)) avoid the cancellation in 1 - s, which finite
    differences would amplify; the exps overflow beyond |l| ~ 700, so only moderate logits are checked this way.
    """
    xp = c.xp
    return target * xp.log1p(xp.exp(-logits)) + (1.0 - target) * xp.log1p(xp.exp(logits))


def check_bce(c):
    errors = []
    for kind, n in (("soft", 3), ("binary", 3), ("soft", 1)):
        target = c.uniform(n, 5) if kind == "soft" else c.xp.where(c.uniform(n, 5) < 0.5, 1.0, 0.0)
        errors += _bce_case(c, c.normal(n, 5, scale=3.0), target, f"{kind} targets, batch {n}")
    big = c.ref.backend.asarray([[1e4, -1e4, 0.5, 30.0, -30.0], [-1e4, 1e4, 2.0, -2.0, 0.0]], dtype="float64")
    target = c.ref.backend.asarray([[1.0, 0.0, 0.3, 0.0, 1.0], [1.0, 0.0, 0.7, 1.0, 0.5]], dtype="float64")
    value, dlogits = _returns(c.stu.losses.bce_with_logits(big, target), 2, "bce_with_logits")
    ref_value, ref_dlogits = c.ref.losses.bce_with_logits(big, target)
    errors.append(("value (logits +-1e4)", c.scalar_error("value", value, ref_value)))
    errors.append(("dlogits (logits +-1e4)", c.error("dlogits", dlogits, ref_dlogits)))
    return errors


def _bce_case(c, logits, target, label):
    """Value, gradient and per-example values against the naive formula (exact at these moderate logits)."""
    losses, xp, n = c.stu.losses, c.xp, logits.shape[0]
    value, dlogits = _returns(losses.bce_with_logits(logits, target), 2, "bce_with_logits")

    def truth(_):
        return float(xp.sum(_bce_naive(c, logits, target))) / n

    per_example = losses.bce_with_logits_per_example(logits, target)
    return [(f"value ({label})", c.scalar_error("value", value, truth(None))),
            (f"dlogits ({label})", c.error("dlogits", dlogits, c.numeric(truth, logits))),
            (f"per-example values ({label})", c.error("per-example values", per_example,
                                                      xp.sum(_bce_naive(c, logits, target), axis=1)))]


def _kl_rows(c, mu, logvar):
    return 0.5 * c.xp.sum(mu * mu + c.xp.exp(logvar) - 1.0 - logvar, axis=1)


def check_kl(c):
    errors = _kl_case(c, c.normal(3, 4), c.normal(3, 4)) + _kl_case(c, c.normal(1, 3), c.normal(1, 3))
    zero = c.ref.backend.zeros((2, 3), "float64")
    value, _, _ = _returns(c.stu.losses.gaussian_kl(zero, c.xp.zeros_like(zero)), 3, "gaussian_kl")
    at_zero = abs(c.as_float("value", value))  # an absolute error: the KL is exactly 0 there
    errors.append(("value at mu = 0, logvar = 0", at_zero if math.isfinite(at_zero) else math.inf))
    return errors


def _kl_case(c, mu, logvar):
    """Value, both gradients and per-example values against the formula written out here."""
    losses, xp, n = c.stu.losses, c.xp, mu.shape[0]
    value, dmu, dlogvar = _returns(losses.gaussian_kl(mu, logvar), 3, "gaussian_kl")

    def truth(_):
        return float(xp.sum(_kl_rows(c, mu, logvar))) / n

    per_example = losses.gaussian_kl_per_example(mu, logvar)
    label = f"batch {n}"
    return [(f"value ({label})", c.scalar_error("value", value, truth(None))),
            (f"dmu ({label})", c.error("dmu", dmu, c.numeric(truth, mu))),
            (f"dlogvar ({label})", c.error("dlogvar", dlogvar, c.numeric(truth, logvar))),
            (f"per-example values ({label})", c.error("per-example values", per_example, _kl_rows(c, mu, logvar)))]


def check_reparam(c):
    return _reparam_case(c, 3) + _reparam_case(c, 1)


def _reparam_case(c, n):
    xp = c.xp
    mu, logvar, eps, dz = c.normal(n, 4), c.normal(n, 4), c.normal(n, 4), c.normal(n, 4)
    layer = c.stu.reparam.Reparameterize()
    layer.forward(mu, logvar, eps=eps)
    dmu, dlogvar = _returns(layer.backward(dz), 2, "Reparameterize.backward")

    def weighted(_):  # z = mu + exp(logvar / 2) eps, weighted by the upstream gradient dz
        return float(xp.sum((mu + xp.exp(0.5 * logvar) * eps) * dz))

    return [(f"dmu (batch {n})", c.error("dmu", dmu, c.numeric(weighted, mu))),
            (f"dlogvar (batch {n})", c.error("dlogvar", dlogvar, c.numeric(weighted, logvar)))]


def check_vae(c):
    """The gradient of the whole objective (the solution's), eps fixed, for both likelihoods and beta != 1."""
    return _vae_case(c, "bernoulli", (6,), 0.5) + _vae_case(c, "gaussian", (5, 4), 2.0)


def _vae_case(c, likelihood, hidden, beta):
    kwargs = {"input_dim": 8, "hidden": hidden, "latent_dim": 3, "likelihood": likelihood, "beta": beta,
              "dtype": "float64"}
    model, twin = c.stu.models.VAE(rng=1, **kwargs), c.ref.models.VAE(rng=1, **kwargs)
    _share(model, twin)
    x, eps = c.uniform(3, 8), c.normal(3, 3)
    model.zero_grad()
    model.loss(x, eps=eps)
    model.backward()
    got = {name: c.ref.backend.copy(p.grad) for name, p in model.named_parameters()}

    def objective(_):
        return twin.loss(x, eps=eps).total

    return [(f"d{name} ({likelihood}, beta={beta})", c.error(f"d{name}", got[name], c.numeric(objective, p.data)))
            for name, p in model.named_parameters()]


ADAM_CONFIGS = (
    ({"lr": 1e-2}, 1.0),
    # Small gradients next to eps = 1e-3 and weight decay: every term of the update matters.
    ({"lr": 0.1, "betas": (0.8, 0.99), "eps": 1e-3, "weight_decay": 0.05}, 1e-2),
)


def check_adam(c, steps=5):
    """Five steps of the student's Adam.step and of their adam_reference against the solution's formula."""
    xp, copy = c.xp, c.ref.backend.copy
    errors = []
    for i, (config, scale) in enumerate(ADAM_CONFIGS, 1):
        start = [c.normal(3, 4), c.normal(5)]
        grads = [[c.normal(*a.shape, scale=scale) for a in start] for _ in range(steps)]
        expected = []
        p, m, v = [copy(a) for a in start], [xp.zeros_like(a) for a in start], [xp.zeros_like(a) for a in start]
        for t in range(steps):
            for j, g in enumerate(grads[t]):
                p[j], m[j], v[j] = c.ref.optim.adam_reference(p[j], g, m[j], v[j], t + 1, **config)
            expected.append([pj - a for pj, a in zip(p, start)])

        params = [c.stu.module.Parameter(copy(a)) for a in start]
        opt = c.stu.optim.Adam(params, **config)
        got = []
        for t in range(steps):
            for param, g in zip(params, grads[t]):
                param.grad[...] = g
            opt.step()
            got.append([param.data - a for param, a in zip(params, start)])

        p, m, v = [copy(a) for a in start], [xp.zeros_like(a) for a in start], [xp.zeros_like(a) for a in start]
        formula = []
        for t in range(steps):
            for j, g in enumerate(grads[t]):
                p[j], m[j], v[j] = _returns(c.stu.optim.adam_reference(p[j], g, m[j], v[j], t + 1, **config), 3,
                                            "adam_reference")
            formula.append([pj - a for pj, a in zip(p, start)])

        for what, run in (("Adam.step", got), ("adam_reference", formula)):
            worst = max(c.error(f"{what} parameter", xp.stack([step[j] for step in run]),
                                xp.stack([step[j] for step in expected])) for j in range(len(start)))
            errors.append((f"{what} trajectory (config {i}, {steps} steps)", worst))
    return errors


CHECKS = {
    "Dense.backward": check_dense,
    "ReLU.backward": activation_check("ReLU"),
    "LeakyReLU.backward": activation_check("LeakyReLU", negative_slope=0.2),
    "Sigmoid.backward": activation_check("Sigmoid"),
    "Tanh.backward": activation_check("Tanh"),
    "Softplus.backward": activation_check("Softplus"),
    "Identity.backward": activation_check("Identity"),
    "bce_with_logits": check_bce,
    "gaussian_kl": check_kl,
    "Reparameterize.backward": check_reparam,
    "VAE.backward": check_vae,
    "Adam.step": check_adam,
}


# ---------------------------------------------------------------------------------------------------------------

def load_reference():
    """This file's own package, imported as ``tinyvae_reference`` so that it can sit beside the student's."""
    spec = importlib.util.spec_from_file_location("tinyvae_reference", HERE / "__init__.py",
                                                  submodule_search_locations=[str(HERE)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["tinyvae_reference"] = module
    spec.loader.exec_module(module)
    importlib.import_module("tinyvae_reference.instructor.assignment")
    return module


def _describe(err, student_pkg):
    """The note for an exception: its name, and for anything but NotImplementedError the message and the line of
    the student's code it came from."""
    if isinstance(err, NotImplementedError):
        return "NotImplementedError"
    text = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}".rstrip(": ")
    text = text if len(text) <= 90 else text[:87] + "..."
    frames = [f for f in traceback.extract_tb(err.__traceback__)
              if Path(f.filename).resolve().is_relative_to(student_pkg)]
    if isinstance(err, SyntaxError) and err.filename:
        return f"{text} ({Path(err.filename).name}, line {err.lineno})"
    return f"{text} ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else text


def _resolve(package, file, qualname):
    """(owner, attribute name) of ``qualname`` in the module ``file`` of ``package``."""
    owner = sys.modules.get(f"{package.__name__}.{file.removesuffix('.py')}")
    *path, attr = qualname.split(".")
    for part in path:
        owner = getattr(owner, part, None)
    if owner is None or attr not in vars(owner):
        raise Wrong(f"{qualname} is missing from {file}")
    return owner, attr


def grade_one(entry, manifest, ref, stu, student_pkg, function_timeout):
    """Check one entry with every other entry's functions swapped for the solution's; returns the JSON row."""
    saved = []
    row = {"kind": "row", "function": entry.id, "passed": False, "error": None, "note": "", "checks": []}
    try:
        for other in manifest:
            if other is entry:
                continue
            for file, qualname in other.targets:
                try:
                    owner, attr = _resolve(stu, file, qualname)
                except Wrong:
                    continue  # the student's copy lacks it: that entry's own row says so
                ref_owner, _ = _resolve(ref, file, qualname)
                saved.append((owner, attr, vars(owner)[attr]))
                setattr(owner, attr, vars(ref_owner)[attr])
        for file, qualname in entry.targets:
            _resolve(stu, file, qualname)
        if hasattr(signal, "SIGALRM"):
            signal.setitimer(signal.ITIMER_REAL, function_timeout)
        checks = CHECKS[entry.id](Ctx(ref, stu))
        if hasattr(signal, "SIGALRM"):
            signal.setitimer(signal.ITIMER_REAL, 0)
        threshold = ref.gradcheck.THRESHOLD
        worst_name, worst = max(checks, key=lambda c: c[1] if not math.isnan(c[1]) else math.inf)
        row.update(passed=all(err < threshold for _, err in checks), error=worst, checks=checks)
        if not row["passed"]:
            row["note"] = f"{worst_name} is not finite" if not math.isfinite(worst) else f"worst: {worst_name}"
    except FunctionTimedOut:
        row["note"] = f"timed out after {function_timeout:g} s"
    except Wrong as err:
        row["note"] = str(err)
    except BaseException as err:  # noqa: BLE001 - a student's sys.exit() or anything else fails only this row
        row["note"] = _describe(err, student_pkg)
    finally:
        if hasattr(signal, "SIGALRM"):
            signal.setitimer(signal.ITIMER_REAL, 0)
        for owner, attr, value in reversed(saved):
            setattr(owner, attr, value)
    return row


def _timed_out(signum, frame):
    raise FunctionTimedOut()


def main(argv=None):
    parser = argparse.ArgumentParser(description="grade a tinyvae student copy (run by tinyvae assignment grade)")
    parser.add_argument("--student", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--function-timeout", type=float, default=20.0)
    args = parser.parse_args(argv)
    # Running this file put the solution's package folder first on sys.path; its modules are not top-level ones.
    sys.path[:] = [p for p in sys.path if not (p and Path(p).resolve() == HERE)]
    warnings.simplefilter("ignore")  # a student's overflow warnings are not the grader's output
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, _timed_out)
    student_pkg = (args.student / "tinyvae").resolve()
    with open(args.out, "w", encoding="utf-8") as results:
        def emit(record):
            results.write(json.dumps(record) + "\n")
            results.flush()

        ref = load_reference()
        manifest = ref.instructor.assignment.MANIFEST
        try:
            import tinyvae as stu
        except BaseException as err:  # noqa: BLE001 - a broken copy fails every row, with the reason
            note = f"the package does not import: {_describe(err, student_pkg)}"
            for entry in manifest:
                emit({"kind": "row", "function": entry.id, "passed": False, "error": None, "note": note,
                      "checks": []})
            return 0
        if Path(stu.__file__).resolve().parent != student_pkg:
            emit({"kind": "fatal", "message": f"`import tinyvae` found {Path(stu.__file__).parent}, not the copy in "
                                              f"{student_pkg}"})
            return 3
        for name in sorted({f.removesuffix(".py") for e in manifest for f, _ in e.targets}):
            importlib.import_module(f"tinyvae.{name}")
        for entry in manifest:
            emit(grade_one(entry, manifest, ref, stu, student_pkg, args.function_timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
