"""Gradient checks: centered finite differences in float64 against the hand-written backward passes.

The numerical gradient of f at x, weighted by an upstream gradient df (as in CS231n's
``eval_numerical_gradient_array``), is

    g_i = sum(df * (f(x + h e_i) - f(x - h e_i))) / (2h),

exact up to O(h^2) truncation and about 1e-16 * |f| / h roundoff, so in float64 with h = 1e-5 a correct backward
pass agrees to about 1e-10. A wrong one is off by O(1): the default threshold of 1e-7 separates the two.
"""
import itertools
import math
from dataclasses import dataclass

from . import backend as B

THRESHOLD = 1e-7


def rel_error(a, b):
    """max |a - b| / max(1e-8, max(|a| + |b|)): the largest difference relative to the gradient's size.

    The denominator is taken over the whole array rather than entry by entry, so an entry that is zero up to
    roundoff (a dead ReLU unit, say) does not turn a 1e-12 difference into a relative error of 1.
    """
    xp = B.get_xp()
    a, b = B.asarray(a), B.asarray(b)
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"rel_error: shapes differ, {tuple(a.shape)} and {tuple(b.shape)}")
    if a.size == 0:
        return 0.0
    num = float(xp.max(xp.abs(a - b)))
    return num / max(1e-8, float(xp.max(xp.abs(a) + xp.abs(b))))


def _require_float64(x, what):
    if not B.is_array(x) or B.dtype_name(x.dtype) != "float64":
        got = B.dtype_name(x.dtype) if hasattr(x, "dtype") and B.is_floating(B.asarray(x)) else type(x).__name__
        raise TypeError(f"gradient checks need float64 arrays of the active backend: {what} is {got} "
                        "(build the module with dtype='float64')")


def numerical_gradient(f, x, df=None, h=1e-5):
    """The centered-difference gradient of f at x (x is perturbed in place, one entry at a time, and restored).

    f(x) returns a scalar when ``df`` is None, else an array that is weighted by ``df`` and summed.
    """
    _require_float64(x, "x")
    xp = B.get_xp()
    grad = xp.zeros_like(x)
    for idx in itertools.product(*(range(n) for n in x.shape)):
        old = float(x[idx])
        x[idx] = old + h
        f_plus = f(x)
        x[idx] = old - h
        f_minus = f(x)
        x[idx] = old
        if df is None:
            grad[idx] = (float(f_plus) - float(f_minus)) / (2 * h)
        else:
            grad[idx] = float(xp.sum((f_plus - f_minus) * df)) / (2 * h)
    return grad


@dataclass
class Check:
    """One compared gradient: what it is, its shape, the relative error seen and the threshold it must beat."""

    name: str
    shape: tuple
    error: float
    threshold: float = THRESHOLD
    note: str = ""

    @property
    def passed(self):
        return self.error < self.threshold


class Report(list):
    """A list of Checks that prints as a table; ``passed`` is True when every check passed."""

    @property
    def passed(self):
        return all(c.passed for c in self)

    def __str__(self):
        width = max([len(c.name) for c in self] + [9])
        lines = [f"{'gradient':<{width}}  {'shape':<12}  {'rel. error':>10}  {'threshold':>9}  result"]
        lines.append("-" * len(lines[0]))
        for c in self:
            shape = "x".join(map(str, c.shape)) or ("-" if c.note else "scalar")
            lines.append(f"{c.name:<{width}}  {shape:<12}  {c.error:>10.2e}  {c.threshold:>9.0e}  "
                         f"{'pass' if c.passed else 'FAIL'}" + (f"  {c.note}" if c.note else ""))
        lines.append(f"{sum(c.passed for c in self)} of {len(self)} passed")
        return "\n".join(lines)


def check_gradients(f, inputs, analytic, prefix="", threshold=THRESHOLD, h=1e-5):
    """Compare ``analytic[name]`` with the numerical gradient of the scalar ``f()`` w.r.t. each ``inputs[name]``.

    ``f`` takes no argument: it reads the arrays in ``inputs`` by reference, which are perturbed in place.
    """
    report = Report()
    for name, x in inputs.items():
        numeric = numerical_gradient(lambda _: f(), x, h=h)
        report.append(Check(prefix + name, tuple(x.shape), rel_error(analytic[name], numeric), threshold))
    return report


def check_module(module, x, df=None, threshold=THRESHOLD, h=1e-5, rng=0, name=None):
    """Check a module's input gradient and every parameter gradient at input x, weighted by upstream ``df``.

    ``df`` defaults to a seeded N(0, 1) draw of the output's shape. Returns a Report (print it for a table).
    """
    xp = B.get_xp()
    x = B.asarray(x)
    _require_float64(x, "the input")
    for pname, p in module.named_parameters():
        _require_float64(p.data, f"parameter {pname}")
    prefix = (name or repr(module).split("\n")[0]) + " "
    y = module.forward(x)
    df = B.as_generator(rng).standard_normal(tuple(y.shape), "float64") if df is None else B.asarray(df)
    module.zero_grad()
    dx = module.backward(df)
    weighted = lambda: float(xp.sum(module.forward(x) * df))  # noqa: E731 - a one-line closure reads best here
    inputs, analytic = {}, {}
    if dx is not None:
        inputs["dx"], analytic["dx"] = x, dx
    for pname, p in module.named_parameters():
        inputs["d" + pname], analytic["d" + pname] = p.data, B.copy(p.grad)
    return check_gradients(weighted, inputs, analytic, prefix, threshold, h)


def check_model(model, x, threshold=THRESHOLD, h=1e-5, name=None, **loss_kwargs):
    """Check the gradient of a model's whole objective ``model.loss(x, **loss_kwargs).total`` w.r.t. every parameter.

    Pass whatever makes the objective deterministic (``eps=`` for a VAE, ``rng=<int seed>`` for the noise of a
    denoising autoencoder); ``model.backward()`` supplies the analytic gradients.
    """
    for pname, p in model.named_parameters():
        _require_float64(p.data, f"parameter {pname}")
    x = B.asarray(x)
    model.zero_grad()
    model.loss(x, **loss_kwargs)
    model.backward()
    params = dict(model.named_parameters())
    analytic = {n: B.copy(p.grad) for n, p in params.items()}
    objective = lambda: model.loss(x, **loss_kwargs).total  # noqa: E731
    prefix = (name or type(model).__name__) + " "
    return check_gradients(objective, {n: p.data for n, p in params.items()}, analytic, prefix, threshold, h)


def _away_from_kinks(x, margin=1e-2):
    """Move entries at least ``margin`` from 0, where ReLU-like functions have no derivative to check."""
    xp = B.get_xp()
    return xp.where(x >= 0, x + margin, x - margin)


def _function_check(name, fn, args, wrt):
    """Check the scalar-valued loss ``fn(*args) -> (value, grad, ...)`` against finite differences in ``wrt``."""
    grads = fn(*args)[1:]
    inputs = {f"d{arg_name}": args[i] for i, arg_name in wrt}
    analytic = {f"d{arg_name}": grads[k] for k, (_, arg_name) in enumerate(wrt)}
    return check_gradients(lambda: fn(*args)[0], inputs, analytic, name + " ")


def _values(rows):
    """A Report of (name, got, expected) comparisons of values (floats or arrays) by relative error."""
    report = Report()
    for name, got, expected in rows:
        got, expected = B.asarray(got, dtype="float64"), B.asarray(expected, dtype="float64")
        finite = bool(B.get_xp().all(B.get_xp().isfinite(got)))
        report.append(Check(name, tuple(got.shape), rel_error(got, expected) if finite else math.inf))
    return report


def value_checks(seed=0):
    """(name, run) pairs for the values the assignment grades besides gradients: BCE and KL against their
    definitions (and finite at logits of +-1e4), per-example forms against the means, Adam against its closed
    form. Each run returns a Report."""
    from . import losses
    from .module import Parameter
    from .optim import Adam, adam_reference

    xp, rng = B.get_xp(), B.Generator(seed + 1)
    logits, target = rng.standard_normal((3, 5), "float64") * 3.0, rng.random((3, 5), "float64")
    mu, logvar = rng.standard_normal((3, 4), "float64"), rng.standard_normal((3, 4), "float64")
    p0, g = rng.standard_normal((3, 4), "float64"), rng.standard_normal((3, 4), "float64")

    def bce():
        s = 1.0 / (1.0 + xp.exp(-logits))
        naive = -(target * xp.log(s) + (1.0 - target) * xp.log(1.0 - s))  # the definition, fine at these logits
        big = B.asarray([[1e4, -1e4, 30.0], [-1e4, 1e4, 0.0]], dtype="float64")
        big_target = B.asarray([[1.0, 0.0, 1.0], [1.0, 0.0, 0.5]], dtype="float64")
        value, grad = losses.bce_with_logits(big, big_target)
        return _values([
            ("bce_with_logits value", losses.bce_with_logits(logits, target)[0], float(xp.sum(naive)) / 3),
            ("bce_with_logits per example", losses.bce_with_logits_per_example(logits, target),
             xp.sum(naive, axis=1)),
            ("bce_with_logits value at +-1e4", value, (1e4 + 1e4 + math.log(2.0)) / 2),
            ("bce_with_logits dlogits at +-1e4", grad, B.asarray([[0.0, 0.0, 0.0], [-0.5, 0.5, 0.0]],
                                                                 dtype="float64"))])

    def kl():
        # Per dimension, KL(N(mu, s^2) || N(0, 1)) = log(1 / s) + (s^2 + mu^2 - 1) / 2.
        rows = xp.sum(-0.5 * logvar + 0.5 * (xp.exp(logvar) + mu * mu - 1.0), axis=1)
        zeros = B.zeros((2, 3), "float64")
        report = _values([("gaussian_kl value", losses.gaussian_kl(mu, logvar)[0], float(xp.sum(rows)) / 3),
                          ("gaussian_kl per example", losses.gaussian_kl_per_example(mu, logvar), rows)])
        report.append(Check("gaussian_kl at mu = 0, logvar = 0", (), abs(losses.gaussian_kl(zeros, zeros)[0])))
        return report

    def adam():
        # With a constant gradient g, m_hat = g and v_hat = g^2 at every step, so each step moves p by exactly
        # lr * g / (|g| + eps): bias correction is what makes that true from the first step on.
        param = Parameter(B.copy(p0))
        opt = Adam([param], lr=0.01, eps=1e-3)
        for _ in range(3):
            param.grad[...] = g
            opt.step()
        closed = -3 * 0.01 * g / (xp.abs(g) + 1e-3)
        w, m, v = B.copy(p0), xp.zeros_like(p0), xp.zeros_like(p0)
        for t in range(1, 4):
            w, m, v = adam_reference(w, g, m, v, t, lr=0.01, eps=1e-3)
        return _values([("Adam.step, 3 steps (closed form)", param.data - p0, closed),
                        ("adam_reference, 3 steps (closed form)", w - p0, closed)])

    def iwae():
        log_w = rng.standard_normal((3, 4), "float64") * 3.0
        naive = -xp.log(xp.mean(xp.exp(log_w), axis=1))  # the definition, fine at these values
        big = B.asarray([[1e4, -1e4, 1e4], [-1e4, -1e4, -1e4]], dtype="float64")
        return _values([("iwae_loss value", losses.iwae_loss(log_w)[0], float(xp.sum(naive)) / 3),
                        ("iwae_loss per example", losses.iwae_loss_per_example(log_w), naive),
                        ("iwae_loss value at +-1e4", losses.iwae_loss(big)[0],
                         (math.log(3) - 1e4 - math.log(2) + 1e4) / 2),
                        ("iwae_loss dlog_w at +-1e4", losses.iwae_loss(big)[1],
                         B.asarray([[-0.25, 0.0, -0.25], [-1 / 6, -1 / 6, -1 / 6]], dtype="float64"))])

    return [("bce_with_logits values", bce), ("gaussian_kl values", kl), ("iwae_loss values", iwae),
            ("Adam.step", adam)]


def conv_checks(seed=0):
    """(name, run) pairs for the convolution: Conv2d's and ConvTranspose2d's gradients, col2im as the adjoint of
    im2col (<im2col(x), c> = <x, col2im(c)> for every x and c, which is what makes it im2col's backward), and a
    small ConvVAE's whole objective."""
    from .conv import Conv2d, ConvTranspose2d, col2im, im2col
    from .conv_models import ConvVAE

    xp, rng = B.get_xp(), B.Generator(seed + 2)
    normal = lambda *shape: rng.standard_normal(shape, "float64")  # noqa: E731

    def conv():
        layer = Conv2d(2, 3, 3, stride=2, padding=1, rng=rng, dtype="float64")
        return check_module(layer, normal(2, 2, 5, 6), rng=seed, name="Conv2d(stride 2, padding 1)")

    def adjoint():
        x = normal(2, 2, 5, 6)
        cols = normal(*im2col(x, 3, 3, 2, 1).shape)
        left = float(xp.sum(im2col(x, 3, 3, 2, 1) * cols))
        right = float(xp.sum(x * col2im(cols, tuple(x.shape), 3, 3, 2, 1)))
        return Report([Check("col2im (adjoint of im2col)", (), rel_error(B.asarray(left), B.asarray(right)))])

    def transposed():
        layer = ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, rng=rng, dtype="float64")
        return check_module(layer, normal(2, 3, 3, 4), rng=seed, name="ConvTranspose2d(stride 2, padding 1)")

    def conv_vae():
        # 5x5 images: stride-2 convolutions down to 3x3 and 2x2, transposed ones back up. Small images keep the
        # objective (and the rounding error of its differences) small; tanh has no kink for a difference to
        # straddle among its many units (ReLU's own gradient is checked above).
        model = ConvVAE((1, 5, 5), channels=(3, 2), latent_dim=3, kernel_size=3, activation="tanh",
                        dtype="float64", rng=rng)
        return check_model(model, rng.random((2, 25), "float64"), eps=normal(2, 3), name="ConvVAE(tanh)")

    return [("Conv2d", conv), ("ConvTranspose2d", transposed), ("col2im", adjoint), ("ConvVAE(tanh)", conv_vae)]


def vaegan_checks(seed=0):
    """(name, run) pairs for the VAE-GAN: each of its three networks' whole objective (encoder: beta KL + L_rec,
    decoder: gamma L_rec + L_gen, discriminator: L_dis) against finite differences in that network's parameters,
    on a small model with its noise fixed (eps for q, z_p for the prior samples). The decoder's gradient passes
    through the discriminator, the encoder's through decoder and discriminator both."""
    from .gan import VAEGAN

    rng = B.Generator(seed + 3)
    model = VAEGAN(12, (7,), 3, disc_hidden=(6, 5), beta=0.8, gamma=0.3, pixel_weight=0.7, dtype="float64",
                   rng=rng)
    x = rng.random((4, 12), "float64")
    noise = {"eps": rng.standard_normal((4, 3), "float64"), "z_prior": rng.standard_normal((4, 3), "float64")}
    names = {id(p): n for n, p in model.named_parameters()}

    def network(name, params):
        model.zero_grad()
        model.loss(x, **noise)
        model.backward()
        return check_gradients(lambda: getattr(model.loss(x, **noise), name),
                               {names[id(p)]: p.data for p in params}, {names[id(p)]: B.copy(p.grad) for p in params},
                               f"VAEGAN {name} objective: ")

    return [(f"VAEGAN {name} objective", lambda name=name, params=params: network(name, params))
            for name, params in model.networks().items()]


def model_checks(seed, rng, x):
    """(name, run) pairs: whole objectives, end to end (the pieces must also be wired together correctly), for
    ``check_components``: its generator ``rng`` (drawn from as each check runs) and its images x (3, 8)."""
    from .models import VAE, Autoencoder, ConditionalVAE, DenoisingAutoencoder

    normal = lambda *shape: rng.standard_normal(shape, "float64")  # noqa: E731
    checks = [
        ("Autoencoder", lambda: check_model(Autoencoder(8, (6,), 3, dtype="float64", rng=rng), x,
                                            name="Autoencoder")),
        ("DenoisingAutoencoder", lambda: check_model(
            DenoisingAutoencoder(8, (6,), 3, noise="masking", noise_level=0.3, dtype="float64", rng=rng), x,
            rng=seed, name="DenoisingAutoencoder")),
    ]
    checks += [(f"VAE({lik}, beta=0.5)", lambda lik=lik: check_model(
        VAE(8, (6,), 2, likelihood=lik, beta=0.5, dtype="float64", rng=rng), x, eps=normal(3, 2),
        name=f"VAE({lik}, beta=0.5)")) for lik in ("bernoulli", "gaussian")]
    return checks + [  # the importance-weighted objective (k codes per example) and the conditional VAE
        ("VAE(k=3, IWAE)", lambda: check_model(VAE(8, (6,), 2, k=3, dtype="float64", rng=rng), x,
                                               eps=normal(3, 3, 2), name="VAE(k=3, IWAE)")),
        ("ConditionalVAE", lambda: check_model(ConditionalVAE(8, (6,), 2, num_classes=3, dtype="float64", rng=rng),
                                               x, y=B.arange(3), eps=normal(3, 2), name="ConditionalVAE")),
    ]


def check_components(seed=0):
    """Gradient-check every component of the library on small float64 problems; returns one Report.

    A component whose code raises (a student copy's ``NotImplementedError``, say) gets one failing row that names
    the error, and the other components are still checked.
    """
    from . import gan, losses
    from .activations import ACTIVATIONS
    from .layers import Dense
    from .module import Sequential
    from .reparam import Reparameterize

    xp = B.get_xp()
    rng = B.Generator(seed)
    normal = lambda *shape: rng.standard_normal(shape, "float64")  # noqa: E731
    dense = lambda n_in, n_out, **kw: Dense(n_in, n_out, rng=rng, dtype="float64", **kw)  # noqa: E731

    def reparameterize():
        reparam, mu, logvar, eps, dz = Reparameterize(), normal(3, 4), normal(3, 4), normal(3, 4), normal(3, 4)
        reparam.forward(mu, logvar, eps=eps)
        dmu, dlogvar = reparam.backward(dz)
        weighted = lambda: float(xp.sum(reparam.forward(mu, logvar, eps=eps) * dz))  # noqa: E731
        return check_gradients(weighted, {"dmu": mu, "dlogvar": logvar}, {"dmu": dmu, "dlogvar": dlogvar},
                               "Reparameterize ")

    x = rng.random((3, 8), "float64")
    target = rng.random((3, 5), "float64")
    checks = [(f"Dense(init={init})", lambda init=init: check_module(dense(7, 5, init=init), normal(3, 7), rng=seed,
                                                                     name=f"Dense(init={init})"))
              for init in ("pytorch", "xavier", "he")]
    checks.append(("Dense(batch 1)", lambda: check_module(dense(4, 3), normal(1, 4), rng=seed, name="Dense(batch 1)")))
    checks += [(cls.__name__, lambda cls=cls: check_module(cls(), _away_from_kinks(normal(4, 6)), rng=seed,
                                                           name=cls.__name__))
               for cls in ACTIVATIONS.values()]
    checks += [
        ("Sequential MLP", lambda: check_module(Sequential(dense(6, 5), ACTIVATIONS["tanh"](), dense(5, 4),
                                                           ACTIVATIONS["softplus"]()), normal(3, 6), rng=seed,
                                                name="Sequential MLP")),
        ("mse", lambda: _function_check("mse", losses.mse, (normal(3, 5), target), [(0, "pred")])),
        ("bce_with_logits", lambda: _function_check("bce_with_logits", losses.bce_with_logits,
                                                    (normal(3, 5) * 3.0, target), [(0, "logits")])),
        ("gaussian_kl", lambda: _function_check("gaussian_kl", losses.gaussian_kl, (normal(3, 4), normal(3, 4)),
                                                [(0, "mu"), (1, "logvar")])),
        ("softmax_cross_entropy", lambda: _function_check(
            "softmax_cross_entropy", losses.softmax_cross_entropy, (normal(4, 5) * 3.0, B.arange(4) % 3),
            [(0, "logits")])),
        ("discriminator_loss", lambda: _function_check(
            "discriminator_loss", gan.discriminator_loss, (normal(3, 1) * 3.0, normal(5, 1) * 3.0),
            [(0, "real_logits"), (1, "fake_logits")])),
        ("iwae_loss", lambda: _function_check("iwae_loss", losses.iwae_loss, (normal(3, 4) * 3.0,), [(0, "log_w")])),
        ("Reparameterize", reparameterize),
    ]
    checks += model_checks(seed, rng, x)
    checks += value_checks(seed)
    checks += conv_checks(seed)
    checks += vaegan_checks(seed)
    checks += cs236_checks(seed)
    report = Report()
    for name, run in checks:
        try:
            report += run()
        except Exception as err:  # noqa: BLE001 - one failing row per broken component, then carry on
            report.append(Check(name, (), math.inf, note=f"{type(err).__name__}: {err}"))
    return report


def cs236_checks(seed=0):
    """(name, run) pairs for CS236 homework 2's models: the log-mixture density's gradient into z, the
    means and the variances; the GMVAE's whole objective (one sampled KL, eps fixed); and the M2 objective through
    its enumeration over the labels and q(y|x)'s weights, with the generative weight 1, 0 and in between."""
    from .gmvae import GMVAE, log_mixture_density, log_mixture_density_backward
    from .ssvae import SSVAE

    xp, rng = B.get_xp(), B.Generator(seed + 3)
    normal = lambda *shape: rng.standard_normal(shape, "float64")  # noqa: E731

    def mixture():
        z, means, dlogp = normal(5, 3), normal(4, 3), normal(5)
        variances = rng.random((4, 3), "float64") + 0.3
        dz, dmeans, dvariances = log_mixture_density_backward(dlogp, z, means, variances)
        weighted = lambda: float(xp.sum(log_mixture_density(z, means, variances) * dlogp))  # noqa: E731
        return check_gradients(weighted, {"dz": z, "dmeans": means, "dvariances": variances},
                               {"dz": dz, "dmeans": dmeans, "dvariances": dvariances}, "log_mixture_density ")

    x, xl = rng.random((5, 8), "float64"), rng.random((3, 8), "float64")
    checks = [("log_mixture_density", mixture),
              ("GMVAE", lambda: check_model(GMVAE(8, (6, 5), 3, components=4, dtype="float64", rng=rng), x,
                                            eps=normal(5, 3), name="GMVAE(K=4)"))]
    checks += [(f"SSVAE(gen_weight={w})", lambda w=w: check_model(
        SSVAE(8, (6,), 3, num_classes=4, gen_weight=w, class_weight=3.0, dtype="float64", rng=rng), x, xl=xl,
        yl=B.arange(3) % 4, eps=normal(5, 4, 3), name=f"SSVAE(gen_weight={w})")) for w in (1.0, 0.0)]
    return checks
