"""Autoencoder, DenoisingAutoencoder and VAE: small MLPs whose whole objective has a hand-written backward pass.

Each model's ``loss(x, ...)`` runs the forward pass and returns the objective per example (``LossParts`` with
``.total``, ``.recon`` and ``.kl``); ``backward()`` then fills every parameter's ``.grad``. Inputs are batches
(N, input_dim) of pixel intensities in [0, 1]; they are converted to the model's dtype on the active backend.
"""
import math

from . import backend as B
from . import losses
from .activations import get_activation, sigmoid
from .layers import Dense
from .module import Module, Sequential
from .reparam import Reparameterize

LIKELIHOODS = ("bernoulli", "gaussian")
NOISES = ("gaussian", "masking")


class LossParts:
    """The objective per example: total = recon + beta * kl (kl is 0 for a plain autoencoder), read as floats.

    On a GPU the numbers stay on the device until one is read (reading waits for the GPU to finish the step), so a
    training loop can add them up without a host sync per step: ``values()`` gives them as they are kept.
    """

    __slots__ = ("_values",)

    def __init__(self, total, recon, kl):
        self._values = (total, recon, kl)

    total = property(lambda self: float(self._values[0]))
    recon = property(lambda self: float(self._values[1]))
    kl = property(lambda self: float(self._values[2]))

    def values(self):
        """(total, recon, kl) as kept: floats, or 0-d arrays of the active backend (not yet read from a GPU)."""
        return self._values

    def __eq__(self, other):
        return isinstance(other, LossParts) and (self.total, self.recon, self.kl) == (other.total, other.recon,
                                                                                       other.kl)

    def __repr__(self):
        return f"LossParts(total={self.total!r}, recon={self.recon!r}, kl={self.kl!r})"


def mlp(sizes, activation="relu", dtype=None, rng=None, last_activation=False):
    """Dense layers sizes[0] -> sizes[1] -> ... with ``activation`` between them (and after the last if asked)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(n_in, n_out, rng=rng, dtype=dtype))
        if i < len(sizes) - 2 or last_activation:
            layers.append(get_activation(activation))
    return Sequential(*layers)


def _check_sizes(input_dim, hidden, latent_dim, likelihood):
    hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
    for name, n in [("input_dim", input_dim), ("latent_dim", latent_dim)] + [("hidden", h) for h in hidden]:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{name} must be a positive int, got {n!r}")
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}: expected one of {', '.join(LIKELIHOODS)}")
    return hidden


def recon_constant(model):
    """What -log p(x|z) adds to the training loss's reconstruction term, in nats per example.

    Bernoulli: 0 (the BCE is -log p(x|z)). Gaussian N(x; mean, I/2): -log p = ||x - mean||^2 + D/2 log(pi), and
    the training loss leaves the constant out (it has no gradient), so add it to report nats on the same footing as
    the IWAE bound.
    """
    return 0.0 if model.likelihood == "bernoulli" else 0.5 * model.input_dim * math.log(math.pi)


def loss_units(model):
    """What the training loss (and ``train.evaluate``) measures, per example, for the model's likelihood.

    Bernoulli: nats (-log p(x|z), plus the KL for a VAE). Gaussian: the squared error, which is -log p(x|z) in nats
    less ``recon_constant(model)``; a squared error is not in nats until that constant is added.
    """
    if model.likelihood == "bernoulli":
        return "nats per example"
    return "squared error + KL per example" if hasattr(model, "beta") else "squared error per example"


class _Base(Module):
    """What the models share: input checks, the reconstruction term, and the decoder's mean image.

    ``needs_labels = True`` on a subclass (a conditional model) makes ``fit`` and ``evaluate`` require labels and
    pass them on as ``loss(x, y=labels, ...)`` and ``loss_per_example(x, y=labels, ...)``.
    """

    needs_labels = False

    def _input(self, x):
        """x as a 2-D batch in the model's dtype; a single image (D,) becomes a batch of one.

        Every forward pass starts here, and each one overwrites what the layers saved for backward: so this is
        also where the gradients of the last ``loss`` are forgotten (``loss`` sets them again when it is done).
        """
        self._grads = None
        if not B.is_array(x):
            x = B.asarray(x)
        if x.ndim == 1:
            x = B.get_xp().reshape(x, (1, -1))
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"{type(self).__name__} expects input of shape (N, {self.input_dim}); "
                             f"got shape {tuple(x.shape)}")
        if not B.is_floating(x):
            raise TypeError(f"{type(self).__name__} expects pixel intensities in [0, 1] as floats; got {x.dtype} "
                            "(divide integer images by 255)")
        return x if x.dtype == self._dtype else B.asarray(x, dtype=self._dtype)

    def _saved(self, value):
        """What ``loss`` stored for ``backward``: a model's backward needs loss(x), not forward(x), to run first."""
        if value is None:
            name = type(self).__name__
            raise RuntimeError(f"{name}.backward was called before {name}.loss, or another forward pass (encode, "
                               f"decode, reconstruct, ...) ran in between: call loss(x) right before backward()")
        return value

    @property
    def _dtype(self):
        return B.resolve_dtype(self.dtype)

    def _recon(self, out, x):
        """The reconstruction term and its gradient: BCE on logits (bernoulli) or squared error (gaussian)."""
        if self.likelihood == "bernoulli":
            return losses.bce_with_logits_fast(out, x)
        return losses.mse(out, x)

    def recon_per_example(self, out, x):
        """-log p(x | z) per example for the decoder output ``out``.

        Bernoulli: the BCE in nats. Gaussian: the squared error, which is -log N(x; out, I/2) up to the constant
        D/2 log(pi) (see ``log_likelihood``).
        """
        if self.likelihood == "bernoulli":
            return losses.bce_with_logits_per_example(out, x)
        return losses.mse_per_example(out, x)

    def log_likelihood(self, out, x):
        """log p(x | z) per example, with the constant included, as the IWAE bound needs."""
        return -self.recon_per_example(out, x) - recon_constant(self)

    def decode(self, z):
        """The mean image of p(x|z) for each code z (a forward pass: it forgets the last loss's gradients)."""
        self._grads = None
        return self.mean_image(self.decoder.forward(B.asarray(z, dtype=self.dtype)))

    def mean_image(self, out):
        """The decoder's output as an image: sigmoid of the logits (bernoulli) or the mean itself (gaussian)."""
        return sigmoid(out) if self.likelihood == "bernoulli" else out

    def config(self):
        """The constructor arguments, enough to rebuild the architecture (used by checkpoints)."""
        return {"model": self.kind, **{k: getattr(self, k) for k in self._config_keys}}


class Autoencoder(_Base):
    """Encoder MLP -> latent code z (linear bottleneck) -> decoder MLP -> reconstruction.

    Objective: recon(decoder(encoder(x)), x), BCE on logits ("bernoulli") or squared error ("gaussian").
    Backward: the reconstruction gradient runs back through the decoder to z, then through the encoder.
    """

    kind = "ae"
    _config_keys = ("input_dim", "hidden", "latent_dim", "likelihood", "activation", "dtype")

    def __init__(self, input_dim=784, hidden=(400,), latent_dim=20, likelihood="bernoulli", activation="relu",
                 dtype=None, rng=None):
        self.hidden = list(_check_sizes(input_dim, hidden, latent_dim, likelihood))
        self.input_dim, self.latent_dim, self.likelihood = input_dim, latent_dim, likelihood
        self.activation, self.dtype = activation, B.dtype_name(dtype)
        rng = B.as_generator(rng)
        self.encoder = mlp([input_dim, *self.hidden, latent_dim], activation, dtype, rng)
        self.decoder = mlp([latent_dim, *reversed(self.hidden), input_dim], activation, dtype, rng)
        self.encoder[0].input_grad = False  # nothing needs the gradient w.r.t. the pixels
        self._grads = None

    def encode(self, x):
        """The latent code z of each example."""
        return self.encoder.forward(self._input(x))

    def forward(self, x):
        """The decoder's raw output (logits for bernoulli) for input x."""
        return self.decoder.forward(self.encoder.forward(self._input(x)))

    def reconstruct(self, x):
        return self.mean_image(self.forward(x))

    def _corrupt(self, x, rng):
        return x

    def loss(self, x, rng=None):
        x = self._input(x)
        out = self.decoder.forward(self.encoder.forward(self._corrupt(x, rng)))
        recon, dout = self._recon(out, x)
        self._grads = dout
        return LossParts(recon, recon, 0.0)

    def loss_per_example(self, x, rng=None):
        """recon per example as arrays (N,) with no gradient: {"loss", "recon", "kl"}."""
        x = self._input(x)
        recon = self.recon_per_example(self.decoder.forward(self.encoder.forward(x)), x)
        return {"loss": recon, "recon": recon, "kl": B.get_xp().zeros_like(recon)}

    def backward(self):
        """dz = decoder'(drecon); then the encoder's backward fills its parameter gradients."""
        dz = self.decoder.backward(self._saved(self._grads))
        self.encoder.backward(dz)


class DenoisingAutoencoder(Autoencoder):
    """An autoencoder trained to reconstruct the CLEAN x from a corrupted copy of it.

    ``noise="gaussian"`` adds N(0, noise_level^2) to every pixel; ``noise="masking"`` sets each pixel to 0 with
    probability ``noise_level``. Corruption happens only in training mode (``model.train()``, the default);
    ``model.eval()`` turns it off. The backward pass is the autoencoder's: no gradient flows into the noise.
    """

    kind = "dae"
    _config_keys = Autoencoder._config_keys + ("noise", "noise_level")

    def __init__(self, input_dim=784, hidden=(400,), latent_dim=20, likelihood="bernoulli", activation="relu",
                 noise="gaussian", noise_level=0.5, dtype=None, rng=None):
        if noise not in NOISES:
            raise ValueError(f"unknown noise {noise!r}: expected one of {', '.join(NOISES)}")
        if not 0.0 <= noise_level <= (1.0 if noise == "masking" else math.inf):
            raise ValueError(f"noise_level must be >= 0 (and <= 1 for masking), got {noise_level!r}")
        super().__init__(input_dim, hidden, latent_dim, likelihood, activation, dtype, rng)
        self.noise, self.noise_level = noise, float(noise_level)

    def corrupt(self, x, rng=None):
        """A corrupted copy of x (whatever the mode), drawn from ``rng``."""
        x = self._input(x)
        rng = B.as_generator(rng)
        if self.noise == "gaussian":
            return x + self.noise_level * rng.standard_normal(tuple(x.shape), self.dtype)
        keep = rng.random(tuple(x.shape), self.dtype) >= self.noise_level
        return x * B.astype(keep, x.dtype)

    def _corrupt(self, x, rng):
        return self.corrupt(x, rng) if self.training else x


class VAE(_Base):
    """A variational autoencoder: q(z|x) = N(mu(x), diag(exp(logvar(x)))), p(z) = N(0, I), p(x|z) from the decoder.

    Objective per example (the negative ELBO when beta = 1):
        recon(decoder(z), x) + beta * KL(q(z|x) || N(0, I)),   z = mu + exp(logvar / 2) * eps.
    Backward: the reconstruction gradient flows decoder -> z -> (mu, logvar) through the reparameterization; the KL
    gradient arrives at (mu, logvar) directly; the two are added there and flow on into the encoder.
    """

    kind = "vae"
    _config_keys = ("input_dim", "hidden", "latent_dim", "likelihood", "beta", "activation", "dtype")

    def __init__(self, input_dim=784, hidden=(400,), latent_dim=20, likelihood="bernoulli", beta=1.0,
                 activation="relu", dtype=None, rng=None):
        self.hidden = list(_check_sizes(input_dim, hidden, latent_dim, likelihood))
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        self.input_dim, self.latent_dim, self.likelihood = input_dim, latent_dim, likelihood
        self.beta, self.activation, self.dtype = float(beta), activation, B.dtype_name(dtype)
        rng = B.as_generator(rng)
        self.encoder = mlp([input_dim, *self.hidden], activation, dtype, rng, last_activation=True)
        width = self.hidden[-1] if self.hidden else input_dim
        self.mu_head = Dense(width, latent_dim, rng=rng, dtype=dtype)
        self.logvar_head = Dense(width, latent_dim, rng=rng, dtype=dtype)
        self.reparam = Reparameterize()
        self.decoder = mlp([latent_dim, *reversed(self.hidden), input_dim], activation, dtype, rng)
        for first in ([self.encoder[0]] if self.hidden else [self.mu_head, self.logvar_head]):
            first.input_grad = False  # nothing needs the gradient w.r.t. the pixels
        self._grads = None

    def encode(self, x):
        """(mu, logvar) of q(z|x) for each example."""
        h = self.encoder.forward(self._input(x))
        return self.mu_head.forward(h), self.logvar_head.forward(h)

    def forward(self, x, eps=None, rng=None):
        """The decoder's raw output for one sampled z per example."""
        mu, logvar = self.encode(x)
        return self.decoder.forward(self.reparam.forward(mu, logvar, eps=eps, rng=rng))

    def loss(self, x, eps=None, rng=None):
        """recon + beta * KL per example, for one z per example (``eps`` fixes the noise; else drawn from rng)."""
        x = self._input(x)
        mu, logvar = self.encode(x)
        z = self.reparam.forward(mu, logvar, eps=eps, rng=rng)
        recon, dout = self._recon(self.decoder.forward(z), x)
        kl, dmu_kl, dlogvar_kl = losses.gaussian_kl_fast(mu, logvar)
        self._grads = (dout, dmu_kl, dlogvar_kl)
        return LossParts(recon + self.beta * kl, recon, kl)

    def loss_per_example(self, x, eps=None, rng=None):
        """{"loss", "recon", "kl"} as arrays (N,), for one z per example, with no gradient."""
        x = self._input(x)
        mu, logvar = self.encode(x)
        z = self.reparam.forward(mu, logvar, eps=eps, rng=rng)
        recon = self.recon_per_example(self.decoder.forward(z), x)
        kl = losses.gaussian_kl_per_example(mu, logvar)
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}

    def backward(self):
        """Fill every parameter's .grad with the gradient of the last ``loss`` (its batch mean)."""
        dout, dmu_kl, dlogvar_kl = self._saved(self._grads)
        # The reconstruction term: back through the decoder to z, then through z = mu + exp(logvar / 2) * eps.
        dz = self.decoder.backward(dout)
        dmu_recon, dlogvar_recon = self.reparam.backward(dz)
        # Where the two terms meet: the KL term's gradient is added at mu and logvar, weighted by beta.
        dmu = dmu_recon + self.beta * dmu_kl
        dlogvar = dlogvar_recon + self.beta * dlogvar_kl
        # Both heads read the same hidden features h, so their input gradients add up.
        dh_mu, dh_logvar = self.mu_head.backward(dmu), self.logvar_head.backward(dlogvar)
        if len(self.encoder):  # empty when the heads read the pixels themselves (hidden=())
            self.encoder.backward(dh_mu + dh_logvar)

    def sample(self, n, rng=None):
        """n new images: z ~ N(0, I) from the prior, decoded to mean images."""
        z = B.as_generator(rng).standard_normal((int(n), self.latent_dim), self.dtype)
        return self.decode(z)

    def reconstruct(self, x):
        """Decode the posterior mean mu(x): a deterministic reconstruction."""
        mu, _ = self.encode(x)
        return self.decode(mu)

    def interpolate(self, x_a, x_b, steps=8, method="linear"):
        """Images decoded along the path from mu(x_a) to mu(x_b): straight ("linear") or on the sphere ("slerp")."""
        if method not in ("linear", "slerp"):
            raise ValueError(f"unknown interpolation {method!r}: expected 'linear' or 'slerp'")
        if int(steps) < 2:
            raise ValueError(f"steps must be at least 2, got {steps!r}")
        xp = B.get_xp()
        mu_a, _ = self.encode(x_a)
        mu_b, _ = self.encode(x_b)
        t = xp.reshape(B.linspace(0.0, 1.0, int(steps), dtype=self.dtype), (-1, 1))
        if method == "linear":
            z = (1.0 - t) * mu_a + t * mu_b
        else:
            cos = float(xp.sum(mu_a * mu_b)) / max(float(xp.sum(mu_a * mu_a) * xp.sum(mu_b * mu_b)) ** 0.5, 1e-12)
            omega = math.acos(min(1.0, max(-1.0, cos)))
            if omega < 1e-6:  # (nearly) parallel codes: slerp reduces to the straight line
                z = (1.0 - t) * mu_a + t * mu_b
            else:
                z = (xp.sin((1.0 - t) * omega) * mu_a + xp.sin(t * omega) * mu_b) / math.sin(omega)
        return self.decode(z)


MODELS = {"ae": Autoencoder, "dae": DenoisingAutoencoder, "vae": VAE}

from .conv_models import ConvAutoencoder, ConvVAE  # noqa: E402 - they subclass the models above

MODELS.update({"convvae": ConvVAE, "convae": ConvAutoencoder})

from .gan import VAEGAN  # noqa: E402 - the VAE-GAN subclasses VAE

MODELS["vaegan"] = VAEGAN


def build(config):
    """A new model from ``model.config()`` (the "model" key picks the class)."""
    config = dict(config)
    kind = config.pop("model", None)
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}: expected one of {', '.join(MODELS)}")
    return MODELS[kind](**config)
