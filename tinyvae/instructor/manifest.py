"""The graded functions: where each lives, its points, its hints, its helpers and fast twins, and its test cases.
Host-only: the cases are drawn with NumPy on the CPU (the grader runs on the NumPy backend).

Adding a graded function (docs/instructors.md walks through one):
  1. an ``Entry`` below: file, qualname, points, hints, ``also_blanks`` (helpers whose code would give the answer
     away; blanked and graded with it), ``twins`` (``_fast`` forms that the handout rewrites to call the plain
     one, so students write the formula once) and ``hidden`` (helpers only those twins call, whose code restates
     the formula: in the handout their bodies just raise);
  2. a scenario in ``runner.SCENARIOS`` (what the function is asked to do: no answers there, it runs on both sides);
  3. a case generator in ``CASES`` (fresh inputs from the run's seed: odd shapes, a batch of one, the edge cases).
The expected values are never written down: the grader runs the scenario on the solution.
"""
import json
import math
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

HINT_LEVELS = ("full", "short", "none")
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")  # Gradescope's test visibilities
CONFIG_KEYS = ("points", "hint", "partial", "visibility")  # what a config may set per function
# Ids a course config may still use for an entry that was renamed: the old name reads as the new one.
RENAMED = {"VAE.backward": "VAE.elbo_backward"}


@dataclass(frozen=True)
class Twin:
    """A fast form of a graded function; in the handout its body becomes a call to ``plain``.

    ``inplace`` names the arguments the twin updates in place (``adam_fast`` updates p, m, v): the delegating
    body copies the plain function's results into them, then returns them.
    """

    file: str
    qualname: str
    plain: str
    inplace: tuple = ()
    body: str = ""  # a delegating body written out, where the plain function needs its arguments reshaped


@dataclass(frozen=True)
class Entry:
    id: str
    file: str
    qualname: str
    points: int
    hint: str  # the full hint: the formula
    short_hint: str  # what to compute, no formula
    scenario: str
    also_blanks: tuple = ()
    twins: tuple = ()
    hint_level: str = "full"
    hidden: tuple = ()  # (file, qualname) of helpers only the twins call; their bodies raise in the handout
    partial: bool = False  # partial credit: points * (cases passed / cases) instead of all or nothing
    visibility: str = "visible"  # Gradescope: visible, hidden, after_due_date or after_published

    @property
    def targets(self):
        """Every (file, qualname) blanked and graded with this entry: the function itself first."""
        return ((self.file, self.qualname), *self.also_blanks)

    @property
    def stubbable(self):
        """Everything the grader swaps for the solution's answers while ANOTHER entry is graded."""
        return (*self.targets, *((t.file, t.qualname) for t in self.twins))

    @property
    def shown_hint(self):
        return {"full": self.hint, "short": self.short_hint, "none": "implement this function"}[self.hint_level]


def _activation_twins(name):
    return (Twin("activations.py", f"{name}_backward_fast", f"{name}_backward"),)


# M2 passes its enumerated logits (N, C, D) and the images (N, 1, D): the per-row BCE and the un-averaged gradient.
BCE_ROWS_WITH_GRAD_DELEGATION = """\
xp = B.get_xp()
target = xp.broadcast_to(B.asarray(target, dtype=logits.dtype), logits.shape)
width = logits.shape[-1]
flat_logits, flat_target = xp.reshape(logits, (-1, width)), xp.reshape(target, (-1, width))
_, grad = bce_with_logits(flat_logits, flat_target)
rows = bce_with_logits_per_example(flat_logits, flat_target)
return xp.reshape(rows, logits.shape[:-1]), xp.reshape(grad * flat_logits.shape[0], logits.shape)
"""
# The SSVAE's fast generative terms: in the handout, the plain ones (so backward always sees the plain layout).
SSVAE_TERMS_DELEGATION = "return self._generative_terms(x, eps, rng)\n"

# The IWAE bound passes logits (m, k, D) and targets (m, 1, D): the plain function takes rows, so flatten first.
BCE_PER_EXAMPLE_DELEGATION = """\
xp = B.get_xp()
logits = B.asarray(logits)
target = xp.broadcast_to(B.asarray(target, dtype=logits.dtype), logits.shape)
width = logits.shape[-1]
rows = bce_with_logits_per_example(xp.reshape(logits, (-1, width)), xp.reshape(target, (-1, width)))
return xp.reshape(rows, logits.shape[:-1])
"""

MANIFEST = (
    Entry("Dense.backward", "layers.py", "Dense.backward", 15,
          "dW = x^T dout, db = sum over the batch of dout, dx = dout W^T (None if not self.input_grad); "
          "ADD dW and db into .grad (self.W.accumulate(dW), or self.W.grad += dW)",
          "the gradients of y = x W + b: ADD them into W.grad and b.grad, return dx (None if not self.input_grad)",
          "dense"),
    Entry("ReLU.backward", "activations.py", "ReLU.backward", 5,
          "relu_backward: dx = dout where y > 0, else 0; ReLU.backward passes it what forward kept "
          "(self._saved(self._cache))",
          "dx for y = max(x, 0); write relu_backward and call it from ReLU.backward", "activation",
          also_blanks=(("activations.py", "relu_backward"),), twins=_activation_twins("relu")),
    Entry("LeakyReLU.backward", "activations.py", "LeakyReLU.backward", 5,
          "leaky_relu_backward: dx = dout where x > 0, else negative_slope * dout; LeakyReLU.backward passes it "
          "the input forward kept (self._saved(self._cache))",
          "dx for y = x if x > 0 else a x; write leaky_relu_backward and call it", "activation",
          also_blanks=(("activations.py", "leaky_relu_backward"),), twins=_activation_twins("leaky_relu")),
    Entry("Sigmoid.backward", "activations.py", "Sigmoid.backward", 5,
          "dx = dout * y * (1 - y), with y = sigmoid(x) the output of forward", "dx for y = sigmoid(x)",
          "activation"),
    Entry("Tanh.backward", "activations.py", "Tanh.backward", 5,
          "dx = dout * (1 - y^2), with y = tanh(x) the output of forward", "dx for y = tanh(x)", "activation"),
    Entry("Softplus.backward", "activations.py", "Softplus.backward", 5,
          "dx = dout * sigmoid(x), with x the input of forward (use the stable sigmoid() above: exp(x) overflows)",
          "dx for y = log(1 + exp(x)), finite for |x| up to 800", "activation"),
    Entry("Identity.backward", "activations.py", "Identity.backward", 5,
          "dx = dout: the derivative of y = x is 1", "dx for y = x", "activation"),
    Entry("bce_with_logits", "losses.py", "bce_with_logits", 10,
          "value = 1/N sum [max(l, 0) - l x + log1p(exp(-|l|))], finite even at l = +-1e4; "
          "dl = (sigmoid(l) - x) / N",
          "the batch-mean binary cross-entropy of sigmoid(l) against x and its gradient, finite at l = +-1e4",
          "bce", also_blanks=(("losses.py", "_bce_terms"),),
          twins=(Twin("losses.py", "bce_with_logits_fast", "bce_with_logits"),
                 Twin("losses.py", "bce_with_logits_per_example_fast", "bce_with_logits_per_example",
                      body=BCE_PER_EXAMPLE_DELEGATION),
                 Twin("losses.py", "bce_rows_with_grad_fast", "bce_with_logits", body=BCE_ROWS_WITH_GRAD_DELEGATION)),
          hidden=(("losses.py", "_bce_rows_fast"),)),
    Entry("gaussian_kl", "losses.py", "gaussian_kl", 10,
          "value = 1/N sum 1/2 (mu^2 + exp(logvar) - 1 - logvar); dmu = mu / N, dlogvar = (exp(logvar) - 1) / (2N)",
          "KL(N(mu, exp(logvar)) || N(0, I)), batch mean, and its gradients", "kl",
          also_blanks=(("losses.py", "gaussian_kl_per_example"),),
          twins=(Twin("losses.py", "gaussian_kl_fast", "gaussian_kl"),)),
    Entry("softmax_cross_entropy", "losses.py", "softmax_cross_entropy", 10,
          "logp = (l - max_c l) - log sum_c exp(l - max_c l) by rows (_log_softmax); value = -1/N sum_n "
          "logp[n, y_n]; dl = (softmax(l) - onehot(y)) / N, finite even at l = +-1e4",
          "the batch-mean cross-entropy of softmax(l) against integer labels y and its gradient, finite at l = +-1e4",
          "softmax_ce", also_blanks=(("losses.py", "_log_softmax"), ("losses.py", "softmax_cross_entropy_per_example")),
          twins=(Twin("losses.py", "softmax_cross_entropy_fast", "softmax_cross_entropy"),)),
    Entry("discriminator_loss", "gan.py", "discriminator_loss", 10,
          "value = 1/N_r sum softplus(-l_r) + 1/N_f sum softplus(l_f), i.e. bce_with_logits(real_logits, 1) + "
          "bce_with_logits(fake_logits, 0), each set averaged over its own rows; dl_r = (sigmoid(l_r) - 1) / N_r, "
          "dl_f = sigmoid(l_f) / N_f",
          "the GAN discriminator's loss (real images labelled 1, fakes 0, each set averaged) and its gradients "
          "w.r.t. both sets of logits", "disc_loss"),
    Entry("iwae_loss", "losses.py", "iwae_loss", 10,
          "lse_i = logsumexp_j log w_ij, shifted by the row max (_logsumexp); value = 1/N sum_i (log k - lse_i); "
          "dlog_w = -exp(log w - lse) / N: minus the normalized importance weights (softmax over j), over N",
          "the batch-mean negative IWAE bound -1/N sum_i log (1/k sum_j w_ij) from log weights (N, k), and its "
          "gradient, finite at log w = +-1e4", "iwae", also_blanks=(("losses.py", "iwae_loss_per_example"),)),
    Entry("Reparameterize.backward", "reparam.py", "Reparameterize.backward", 10,
          "reparameterize_backward: z = mu + exp(logvar / 2) * eps, so dmu = dz and "
          "dlogvar = dz * eps * exp(logvar / 2) / 2 (std = exp(logvar / 2) is kept by forward)",
          "(dmu, dlogvar) for z = mu + exp(logvar / 2) eps", "reparam",
          also_blanks=(("reparam.py", "reparameterize_backward"),),
          twins=(Twin("reparam.py", "reparameterize_backward_fast", "reparameterize_backward"),)),
    Entry("VAE.elbo_backward", "models.py", "VAE.elbo_backward", 15,
          "dz = decoder.backward(dout); (dmu, dlogvar) = reparam.backward(dz) + beta * (the KL gradients); "
          "both heads' input gradients add up into encoder.backward; never zero the gradients here",
          "the gradient of the last loss() into every parameter's .grad (added, never zeroed)", "vae"),
    Entry("Adam.step", "optim.py", "Adam.step", 10,
          "t += 1; g = grad + weight_decay p; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; "
          "p -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps), as torch.optim.Adam "
          "(adam_reference is the formula; Adam.step counts t and calls adam_fast per flat buffer)",
          "one step of torch.optim.Adam (write adam_reference, then Adam.step)", "adam",
          also_blanks=(("optim.py", "adam_reference"),),
          twins=(Twin("optim.py", "adam_fast", "adam_reference", inplace=("p", "m", "v")),)),
    Entry("col2im", "conv.py", "col2im", 10,
          "xpad = zeros (N, C, H + 2p, W + 2p); patches = cols reshaped to (N, OH, OW, C, kh, kw); for each output "
          "pixel (i, j) ADD patches[:, i, j] onto xpad[:, :, i*s:i*s+kh, j*s:j*s+kw]; return xpad without the "
          "padding",
          "the adjoint of im2col: add every row of cols back onto the window it came from, then cut the padding",
          "col2im", twins=(Twin("conv.py", "col2im_fast", "col2im"),)),
    Entry("Conv2d.backward", "conv.py", "Conv2d.backward", 10,
          "dout_rows = _rows(dout) (N*OH*OW, F); dW = dout_rows^T cols, back to W's shape with _channels_first; "
          "db = dout_rows summed over rows; dx = col2im_fast(_unfolded(dout_rows @ w_rows, C, kh, kw), x_shape, "
          "...) (None if not self.input_grad); ADD dW and db with accumulate",
          "the gradients of y = cols W2^T + b: ADD dW and db into .grad, return dx through col2im (None if not "
          "self.input_grad)", "conv2d"),
    # ---- CS236 homework 2: the log-mixture density's gradient and the M2 objective's backward ----
    Entry("log_mixture_density_backward", "gmvae.py", "log_mixture_density_backward", 10,
          "l = log_normal_components(z, means, variances) (N, K); r = exp(l - logsumexp_k l) (the responsibilities, "
          "rows sum to 1); g = dlogp[:, None] * r; u = (z[:, None] - means[None]) / variances (N, K, d); "
          "dz = -sum_k g u, dmeans = sum_n g u, dvariances = sum_n g (u^2 - 1 / variances) / 2",
          "the gradients of sum_n dlogp_n log (1/K sum_k N(z_n; m_k, diag v_k)) w.r.t. z, the means and the "
          "variances", "mixture",
          twins=(Twin("gmvae.py", "log_mixture_density_backward_fast", "log_mixture_density_backward"),)),
    Entry("SSVAE.backward", "ssvae.py", "SSVAE.backward", 15,
          "w = gen_weight / N; g = w (A + log pi + 1) with A = rec + KL_z (N, C); dlogits = pi (g - sum_c pi g) for "
          "the unlabeled rows, class_weight * dlogits_l for the labeled ones (one classifier.backward); each "
          "enumerated row n*C+c has weight w pi_nc: dout = (sigmoid(out) - x_rep) w pi, dz = decoder.backward(dout)"
          "[:, :latent_dim], (dmu, dlogvar) = reparam.backward(dz) + w pi (mu, (exp(logvar) - 1) / 2), then both "
          "heads into encoder.backward; with gen_weight = 0 (pi is None) only the labeled cross-entropy",
          "the gradient of the last M2 loss (labels enumerated and weighted by q(y|x), KL(q(y|x) || uniform), the "
          "weighted labeled cross-entropy) into every parameter's .grad (added, never zeroed)", "ssvae",
          twins=(Twin("ssvae.py", "SSVAE._generative_terms_fast", "SSVAE._generative_terms",
                      body=SSVAE_TERMS_DELEGATION),),
          hidden=(("ssvae.py", "SSVAE._encoder_split_fast"), ("ssvae.py", "SSVAE._encoder_split_backward_fast"))),
)

# What gives each answer away, for hint levels "short" and "none" (the handout checks that none of it survives):
# FORMULAS are fragments of its code or math, compared with whitespace removed, lower case, "1.0" as "1" and "**"
# as "^" (``normalise``); a docstring sentence or comment holding one is dropped. RESTATES are other functions whose
# code restates the answer: their bodies raise in such a handout (the VAE-GAN's then does not train).
FORMULAS = {
    "Dense.backward": ("x^tdout", "doutw^t", "x.t,dout", "dout@self.w.data.t", "dout@layer.w.data.t",
                       "sum_ndout", "sum(dout,axis=0)"),
    "ReLU.backward": ("y>0", "x>0,else0", "wherex>0,else0"),
    "LeakyReLU.backward": ("negative_slope*dout", "a*dout", "(a+(1-a)", "dout*a"),
    "Sigmoid.backward": ("y*(1-y)", "images*(1-images)", "s*(1-s)"),
    "Tanh.backward": ("1-y^2", "1-y*y", "1-tanh"),
    "Softplus.backward": ("dout*sigmoid(x)",),
    "Identity.backward": ("dx=dout.", "dx=dout\n"),
    "bce_with_logits": ("sigmoid(l)-x", "sigmoid-target", "(sigmoid(l)-x)/n", "grad-=target"),
    "gaussian_kl": ("exp(logvar)-1", "(var-1)", "mu/n", "mu*(1/n)"),
    "softmax_cross_entropy": ("softmax(l)-onehot", "probs-onehot", "-onehot"),
    "discriminator_loss": ("sigmoid(l_r)-1", "sigmoid(l_f)/n_f", "sigmoid(real)-1"),
    "iwae_loss": ("-exp(log_w-lse", "-exp(logw-lse", "minusthenormalizedimportanceweights", "-w~_ij/n"),
    "Reparameterize.backward": ("dz*eps*std/2", "eps*exp(logvar/2)/2", "dz*eps*exp(logvar/2)", "dlogvar*=std"),
    "VAE.elbo_backward": ("self.reparam.backward(dz)", "beta*dmu_kl", "beta*g[\"dmu_kl\"]", "dmu_recon+",
                          "decoder'(dout)", "reparam'(dz)"),
    "Adam.step": ("1-b1^t", "1-b2^t", "1-b_i^t", "(1-b1)*g", "(1-b1)g", "(1-b2)*g*g", "(1-b2)g^2",
                  "m/(sqrt(v)"),
    "col2im": ("xpad[:,:,i*s:i*s+kh", "+=patches", "addpatches"),
    "Conv2d.backward": ("dout_rows^tcols", "dout_rows@w_rows", "dout_rows.t@"),
    "log_mixture_density_backward": ("u*u-1/variances", "(u_nk^2-1/v_k)/2"),
    "SSVAE.backward": ("pi*(g-xp.sum(pi*g", "w(a_nc+logpi_nc+1)"),
}
RESTATES = {
    "Dense.backward": (("gan.py", "input_gradient"), ("ssvae.py", "SSVAE._encoder_split_backward_fast")),
    "Sigmoid.backward": (("gan.py", "VAEGAN.backward"),),
    "VAE.elbo_backward": (("gan.py", "VAEGAN._encoder_backward"), ("ssvae.py", "SSVAE.backward")),
}


def normalise(text):
    """``text`` as FORMULAS are written: no whitespace, lower case, "1.0" -> "1", "2.0" -> "2", "**" -> "^"."""
    text = "".join(text.lower().split())
    return text.replace("**", "^").replace("1.0", "1").replace("2.0", "2").replace("0.5*", "1/2*")


# Files replaced as a whole in the handout: CuPy kernels restate the formulas; the handout's _fast twins call the
# plain functions instead, so nothing there is needed.
REPLACED_FILES = {
    "kernels.py": '"""CuPy fused kernels: not part of the assignment (the _fast twins call your plain functions)."""\n',
}


def entry(function_id, entries=MANIFEST):
    for e in entries:
        if e.id == function_id:
            return e
    raise ValueError(f"unknown function {function_id!r}: expected one of {', '.join(e.id for e in entries)}")


def load_config(path):
    """The entries an instructor chose: a TOML or JSON file of the form

        [functions."Dense.backward"]        {"functions": {"Dense.backward": {"points": 20, "hint": "short"}}}
        points = 20                         # any number >= 0 (2.5 is fine)
        hint = "short"                      # full | short | none
        partial = true                      # optional: credit per case passed (default: all or nothing)
        visibility = "after_due_date"       # optional, for Gradescope: visible | hidden | after_due_date | ...

    or a handout folder (or its ``.tinyvae-assignment.json``): the config ``make`` recorded there. Functions not
    listed are not handed out as exercises and not graded. ``None`` gives the whole manifest.
    """
    if path is None:
        return MANIFEST
    path = Path(path)
    if path.is_dir():
        path = path / MARKER
        if not path.is_file():
            raise ValueError(f"assignment config {path.parent}: not a handout folder (no {MARKER}); give the "
                             "config file (TOML or JSON) or the folder `tinyvae assignment make` wrote")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else _toml(text)
    except (OSError, ValueError) as err:
        raise ValueError(f"assignment config {path}: {err}") from None
    return entries_from_dict(data, f"assignment config {path}")


def _toml(text):
    """TOML text as a dict: tomllib on Python 3.11+, tomli (the same parser, from PyPI) on 3.10."""
    try:
        import tomllib
    except ModuleNotFoundError:
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ValueError("reading a TOML config on Python 3.10 needs tomli (pip install tomli; setup.cfg "
                             "installs it there), or write the config as JSON") from None
    return tomllib.loads(text)


MARKER = ".tinyvae-assignment.json"  # the config a handout was made with, in the handout folder
RECORD = "assignment.json"  # the same, inside the handout's package: it travels with every submission


def entries_from_dict(data, where):
    """The chosen entries from {"functions": {id: {points, hint, partial, visibility}}}; every mistake named."""
    if not isinstance(data, dict) or set(data) - {"functions", "tinyvae"}:
        extra = sorted(set(data) - {"functions", "tinyvae"}) if isinstance(data, dict) else data
        raise ValueError(f"{where}: unknown top-level keys {extra}: expected a [functions.\"NAME\"] table per "
                         "graded function")
    functions = data.get("functions")
    if not isinstance(functions, dict) or not functions:
        raise ValueError(f"{where}: expected a [functions.\"NAME\"] table per graded function")
    chosen = []
    for name, spec in functions.items():
        e = entry(RENAMED.get(name, name))
        if spec is None:
            spec = {}
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: {name}: expected a table of {', '.join(CONFIG_KEYS)}, got {spec!r}")
        unknown = sorted(set(spec) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"{where}: {name}: unknown keys {unknown}; the known keys are {', '.join(CONFIG_KEYS)}")
        points, level = spec.get("points", e.points), spec.get("hint", "full")
        partial, visibility = spec.get("partial", False), spec.get("visibility", "visible")
        if not isinstance(points, (int, float)) or isinstance(points, bool) or not math.isfinite(points) \
                or points < 0:
            raise ValueError(f"{where}: {name}: points must be a number >= 0, got {points!r}")
        if level not in HINT_LEVELS:
            raise ValueError(f"{where}: {name}: hint must be one of {HINT_LEVELS}, got {level!r}")
        if not isinstance(partial, bool):
            raise ValueError(f"{where}: {name}: partial must be true or false, got {partial!r}")
        if visibility not in VISIBILITIES:
            raise ValueError(f"{where}: {name}: visibility must be one of {VISIBILITIES}, got {visibility!r}")
        if any(c.id == e.id for c in chosen):
            raise ValueError(f"{where}: {e.id} is listed twice")
        points = int(points) if float(points).is_integer() else float(points)
        chosen.append(replace(e, points=points, hint_level=level, partial=partial, visibility=visibility))
    order = [e.id for e in MANIFEST]
    return tuple(sorted(chosen, key=lambda e: order.index(e.id)))


def config_dict(entries):
    return {"functions": {e.id: {"points": e.points, "hint": e.hint_level, "partial": e.partial,
                                 "visibility": e.visibility} for e in entries}}


def same_config(a, b):
    """True when two lists of entries grade the same functions with the same points, levels and credit rules."""
    return config_dict(a) == config_dict(b)


# ---------------------------------------------------------------------------------------------------------------
# Cases: fresh inputs for each grading run, drawn from the run's seed and the function's name
# ---------------------------------------------------------------------------------------------------------------

def function_rng(seed, function_id, visible=False):
    """The generator of one function's cases. The handout's self-check draws ``visible`` cases from another stream,
    so they never coincide with a grading run's, whatever its seed."""
    return np.random.default_rng([int(seed), zlib.crc32(function_id.encode()), *([1] if visible else [])])


def _away_from_kinks(x, margin=0.05):
    return np.where(x >= 0, x + margin, x - margin)


def dense_cases(rng):
    cases = []
    for n, d_in, d_out, input_grad in ((3, 7, 5, True), (1, 4, 3, True), (4, 6, 6, True), (2, 5, 4, False)):
        arrays = {"W": rng.normal(size=(d_in, d_out)), "b": rng.normal(size=d_out), "x": rng.normal(size=(n, d_in)),
                  "dout": rng.normal(size=(n, d_out)), "gW": rng.normal(size=(d_in, d_out)),
                  "gb": rng.normal(size=d_out)}
        cases.append(({"in": d_in, "out": d_out, "input_grad": input_grad}, arrays))
    return cases


def activation_cases(name, **kwargs):
    def cases(rng):
        out = []
        for shape in ((4, 6), (1, 5), (3, 3)):
            x = _away_from_kinks(rng.normal(size=shape) * 2.0)
            out.append(({"name": name, "kwargs": kwargs}, {"x": x, "dout": rng.normal(size=shape)}))
        if name in ("Softplus", "Sigmoid", "Tanh"):  # far out, where exp overflows: the stable forms give 0 and 1
            x = np.array([[-800.0, -40.0, 0.3, 40.0, 800.0]])
            out.append(({"name": name, "kwargs": kwargs}, {"x": x, "dout": rng.normal(size=x.shape)}))
        return out
    return cases


def bce_cases(rng):
    cases = []
    for kind, n in (("soft", 3), ("binary", 3), ("soft", 1)):
        target = rng.random((n, 5)) if kind == "soft" else (rng.random((n, 5)) < 0.5).astype(float)
        cases.append(({"kind": kind}, {"logits": rng.normal(size=(n, 5)) * 3.0, "target": target}))
    big = np.array([[1e4, -1e4, 0.5, 30.0, -30.0], [-1e4, 1e4, 2.0, -2.0, 0.0]])
    cases.append(({"kind": "logits +-1e4"}, {"logits": big, "target": np.array([[1.0, 0.0, 0.3, 0.0, 1.0],
                                                                               [1.0, 0.0, 0.7, 1.0, 0.5]])}))
    return cases


def kl_cases(rng):
    cases = [({}, {"mu": rng.normal(size=(n, k)), "logvar": rng.normal(size=(n, k))}) for n, k in ((3, 4), (1, 3))]
    cases.append(({"kind": "mu = 0, logvar = 0"}, {"mu": np.zeros((2, 3)), "logvar": np.zeros((2, 3))}))
    return cases


def softmax_ce_cases(rng):
    cases = [({}, {"logits": rng.normal(size=(n, c)) * 3.0, "labels": rng.integers(0, c, size=n)})
             for n, c in ((4, 10), (1, 3), (5, 2))]
    big = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0]])
    cases.append(({"kind": "logits +-1e4"}, {"logits": big, "labels": np.array([1, 1])}))
    return cases


def disc_loss_cases(rng):
    """Real and fake sets of different sizes (as the VAE-GAN's N real and 2N fakes), a batch of one, big logits."""
    cases = [({}, {"real": rng.normal(size=(n_r, 1)) * 3.0, "fake": rng.normal(size=(n_f, 1)) * 3.0})
             for n_r, n_f in ((3, 6), (1, 1), (4, 3))]
    cases.append(({"kind": "logits +-1e4"}, {"real": np.array([[1e4], [-1e4]]), "fake": np.array([[-1e4], [1e4]])}))
    return cases


def iwae_cases(rng):
    cases = [({}, {"log_w": rng.normal(size=(n, k)) * 3.0 - 50.0}) for n, k in ((4, 5), (1, 3), (3, 1))]
    big = np.array([[1e4, -1e4, 1e4, 0.0], [-1e4, -1e4 + 1.0, -2e4, -1e4]])
    cases.append(({"kind": "log w +-1e4"}, {"log_w": big}))
    return cases


def reparam_cases(rng):
    return [({}, {k: rng.normal(size=(n, 4)) for k in ("mu", "logvar", "eps", "dz")}) for n in (3, 1)]


def needs_solution(make):
    """Mark a case generator that builds models from the solution package: it is called as make(rng, solution)."""
    make.needs_solution = True
    return make


@needs_solution
def vae_cases(rng, solution):
    """Two VAEs (both likelihoods, beta != 1, one and two hidden layers) with random weights and non-zero grads."""
    cases = []
    for likelihood, hidden, beta in (("bernoulli", (6,), 0.5), ("gaussian", (5, 4), 2.0)):
        kwargs = {"input_dim": 8, "hidden": hidden, "latent_dim": 3, "likelihood": likelihood, "beta": beta}
        model = solution.VAE(rng=1, dtype="float64", **kwargs)
        arrays = {"x": rng.random((3, 8)), "eps": rng.normal(size=(3, 3))}
        for name, param in model.named_parameters():
            arrays[name] = rng.normal(size=param.shape) * 0.5
            arrays[f"{name}.grad"] = rng.normal(size=param.shape)
        cases.append(({"kwargs": {**kwargs, "hidden": list(hidden)}}, arrays))
    return cases


ADAM_CONFIGS = (
    ({"lr": 1e-2}, 1.0),
    # Small gradients next to eps = 1e-3 and weight decay: every term of the update matters.
    ({"lr": 0.1, "betas": [0.8, 0.99], "eps": 1e-3, "weight_decay": 0.05}, 1e-2),
)


def adam_cases(rng, steps=5):
    cases = []
    for config, scale in ADAM_CONFIGS:
        shapes = ((3, 4), (5,))
        arrays = {f"p{j}": rng.normal(size=s) for j, s in enumerate(shapes)}
        for t in range(steps):
            for j, s in enumerate(shapes):
                arrays[f"g{t}_{j}"] = rng.normal(size=s) * scale
        cases.append(({"config": config, "steps": steps, "n_params": len(shapes)}, arrays))
    return cases


# (N, C, H, W, kernel, stride, padding): odd sizes, a batch of one, overlapping windows, stride 2 with padding
CONV_SHAPES = ((2, 3, 5, 7, 3, 1, 0), (1, 2, 7, 5, 3, 2, 1), (2, 1, 9, 7, 4, 2, 1))


def col2im_cases(rng):
    cases = []
    for (n, c, h, w, k, s, p), unfolded in zip(CONV_SHAPES + CONV_SHAPES[:1], (False, False, False, True)):
        rows = n * ((h + 2 * p - k) // s + 1) * ((w + 2 * p - k) // s + 1)
        params = {"x_shape": [n, c, h, w], "k": k, "stride": s, "padding": p, "unfolded": unfolded}
        cases.append((params, {"cols": rng.normal(size=(rows, c * k * k))}))
    return cases


def conv2d_cases(rng):
    cases = []
    for (n, c, h, w, k, s, p), f, input_grad in zip(CONV_SHAPES + CONV_SHAPES[1:2], (4, 3, 2, 3),
                                                    (True, True, True, False)):
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        arrays = {"W": rng.normal(size=(f, c, k, k)), "b": rng.normal(size=f), "x": rng.normal(size=(n, c, h, w)),
                  "dout": rng.normal(size=(n, f, oh, ow)), "gW": rng.normal(size=(f, c, k, k)),
                  "gb": rng.normal(size=f)}
        cases.append(({"c": c, "f": f, "k": k, "stride": s, "padding": p, "input_grad": input_grad}, arrays))
    return cases


CASES = {
    "Dense.backward": dense_cases,
    "ReLU.backward": activation_cases("ReLU"),
    "LeakyReLU.backward": activation_cases("LeakyReLU", negative_slope=0.2),
    "Sigmoid.backward": activation_cases("Sigmoid"),
    "Tanh.backward": activation_cases("Tanh"),
    "Softplus.backward": activation_cases("Softplus"),
    "Identity.backward": activation_cases("Identity"),
    "bce_with_logits": bce_cases,
    "gaussian_kl": kl_cases,
    "softmax_cross_entropy": softmax_ce_cases,
    "discriminator_loss": disc_loss_cases,
    "iwae_loss": iwae_cases,
    "Reparameterize.backward": reparam_cases,
    "VAE.elbo_backward": vae_cases,
    "Adam.step": adam_cases,
    "col2im": col2im_cases,
    "Conv2d.backward": conv2d_cases,
}


def cases(e, seed, solution, visible=False):
    """The list of (params, arrays) the function ``e`` is graded on in the run with this seed (``visible``: the
    self-check's cases of the same kinds, from another stream)."""
    make = CASES[e.id]
    rng = function_rng(seed, e.id, visible)
    return make(rng, solution) if getattr(make, "needs_solution", False) else make(rng)


# ---- CS236 homework 2: cases for the log-mixture density's gradient and the M2 backward ----


def mixture_cases(rng):
    """Odd shapes, one component (a Gaussian), a batch of one, and a code far from every component."""
    cases = []
    for n, k, d in ((5, 4, 3), (3, 1, 2), (1, 6, 4)):
        cases.append(({}, {"z": rng.normal(size=(n, d)), "means": rng.normal(size=(k, d)),
                           "variances": rng.random((k, d)) + 0.2, "dlogp": rng.normal(size=n)}))
    cases.append(({"kind": "a code far from every component"},
                  {"z": np.array([[40.0, -30.0], [0.1, 0.2]]), "means": rng.normal(size=(3, 2)),
                   "variances": rng.random((3, 2)) + 0.5, "dlogp": np.array([1.0, -0.5])}))
    return cases


@needs_solution
def ssvae_cases(rng, solution):
    """M2 with random weights and non-zero grads: both weights on, a batch of one, and the classifier alone."""
    cases = []
    for n, m, hidden, gen_weight, class_weight in ((4, 3, (6,), 1.0, 100.0), (1, 2, (5, 4), 0.5, 2.0),
                                                   (3, 2, (6,), 0.0, 10.0)):
        kwargs = {"input_dim": 8, "hidden": hidden, "latent_dim": 3, "num_classes": 4, "gen_weight": gen_weight,
                  "class_weight": class_weight}
        model = solution.SSVAE(rng=1, dtype="float64", **kwargs)
        arrays = {"x": rng.random((n, 8)), "xl": rng.random((m, 8)), "yl": rng.integers(0, 4, size=m),
                  "eps": rng.normal(size=(n, 4, 3))}
        for name, param in model.named_parameters():
            arrays[name] = rng.normal(size=param.shape) * 0.5
            arrays[f"{name}.grad"] = rng.normal(size=param.shape)
        cases.append(({"kwargs": {**kwargs, "hidden": list(hidden)}}, arrays))
    return cases


CASES.update({"log_mixture_density_backward": mixture_cases, "SSVAE.backward": ssvae_cases})
