"""Autoencoder, DenoisingAutoencoder and VAE: small MLPs whose whole objective has a hand-written backward pass.

Each model's ``loss(x, ...)`` runs the forward pass and returns the objective per example (``LossParts`` with
``.total``, ``.recon`` and ``.kl``); ``backward()`` then fills every parameter's ``.grad``. Inputs are batches
(N, input_dim) of pixel intensities in [0, 1]; they are converted to the model's dtype on the active backend.
"""
import math

from . import backend as B
from . import iwae, losses
from .activations import get_activation, sigmoid
from .checks import check_labels, layer_sizes, one_of, positive_int
from .errors import InputError
from .layers import Dense
from .losses import LossParts, recon_constant  # noqa: F401  (public here too: models.LossParts)
from .module import Module, Sequential
from .reparam import Reparameterize

LIKELIHOODS = ("bernoulli", "gaussian")
NOISES = ("gaussian", "masking")
LOG_2PI = math.log(2.0 * math.pi)


def mlp(sizes, activation="relu", dtype=None, rng=None, last_activation=False):
    """Dense layers sizes[0] -> sizes[1] -> ... with ``activation`` between them (and after the last if asked)."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(n_in, n_out, rng=rng, dtype=dtype))
        if i < len(sizes) - 2 or last_activation:
            layers.append(get_activation(activation))
    return Sequential(*layers)


def check_sizes(input_dim, hidden, latent_dim, likelihood):
    """``hidden`` as a tuple, after checking the sizes (positive ints) and the likelihood (one of LIKELIHOODS)."""
    hidden = layer_sizes(input_dim, hidden, latent_dim)
    one_of(likelihood, LIKELIHOODS, "likelihood")
    return hidden


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
        self._loss_grads = None
        if not B.is_array(x):
            x = B.asarray(x)
        if x.ndim == 1:
            x = B.get_xp().reshape(x, (1, -1))
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise InputError(f"{type(self).__name__} expects input of shape (N, {self.input_dim}); "
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
        return losses.mse_fast(out, x)

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
        self._loss_grads = None
        return self.mean_image(self.decoder.forward(self._decoder_input(B.asarray(z, dtype=self.dtype))))

    def _decoder_input(self, z):
        """What the decoder reads for codes z: z itself (a conditional VAE appends its labels)."""
        return z

    def mean_image(self, out):
        """The decoder's output as an image: sigmoid of the logits (bernoulli) or the mean itself (gaussian)."""
        return sigmoid(out) if self.likelihood == "bernoulli" else out

    def config(self):
        """The constructor arguments, enough to rebuild the architecture (used by checkpoints)."""
        return {"model": self.kind, **{k: getattr(self, k) for k in self._config_keys}}


ModelBase = _Base  # public name for models in other files that build on it (ssvae.SSVAE)


class Autoencoder(_Base):
    """Encoder MLP -> latent code z (linear bottleneck) -> decoder MLP -> reconstruction.

    Objective: recon(decoder(encoder(x)), x), BCE on logits ("bernoulli") or squared error ("gaussian").
    Backward: the reconstruction gradient runs back through the decoder to z, then through the encoder.
    """

    kind = "ae"
    _config_keys = ("input_dim", "hidden", "latent_dim", "likelihood", "activation", "dtype")

    def __init__(self, input_dim=784, hidden=(400,), latent_dim=20, likelihood="bernoulli", activation="relu",
                 dtype=None, rng=None):
        self.hidden = list(check_sizes(input_dim, hidden, latent_dim, likelihood))
        self.input_dim, self.latent_dim, self.likelihood = input_dim, latent_dim, likelihood
        self.activation, self.dtype = activation, B.dtype_name(dtype)
        rng = B.as_generator(rng)
        self.encoder = mlp([input_dim, *self.hidden, latent_dim], activation, dtype, rng)
        self.decoder = mlp([latent_dim, *reversed(self.hidden), input_dim], activation, dtype, rng)
        self.encoder[0].input_grad = False  # nothing needs the gradient w.r.t. the pixels
        self._loss_grads = None

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
        self._loss_grads = dout
        return LossParts(recon, recon, 0.0)

    def loss_per_example(self, x, rng=None):
        """recon per example as arrays (N,) with no gradient: {"loss", "recon", "kl"}."""
        x = self._input(x)
        recon = self.recon_per_example(self.decoder.forward(self.encoder.forward(x)), x)
        return {"loss": recon, "recon": recon, "kl": B.get_xp().zeros_like(recon)}

    def backward(self):
        """dz = decoder'(dout); then the encoder's backward fills its parameter gradients (added, never zeroed).

        Inputs (kept by ``loss`` in ``_loss_grads``): dout (N, D), the reconstruction loss's gradient w.r.t. the
        decoder's output. dz: (N, K). Returns None: the results are the parameters' .grad.
        """
        dz = self.decoder.backward(self._saved(self._loss_grads))
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
        one_of(noise, NOISES, "noise")
        if not 0.0 <= noise_level <= (1.0 if noise == "masking" else math.inf):
            raise InputError(f"noise_level must be >= 0 (and <= 1 for masking), got {noise_level!r}")
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

    ``k > 1`` trains on the importance-weighted bound of Burda et al. (2016) instead, with k codes per example (the
    IWAE): see ``tinyvae.iwae``. k = 1 (the default) is the VAE above, with its exact KL term.
    """

    kind = "vae"
    _config_keys = ("input_dim", "hidden", "latent_dim", "likelihood", "beta", "k", "activation", "dtype")
    _condition_width = 0  # label columns appended to the encoder's and decoder's inputs (a conditional VAE's)

    def __init__(self, input_dim=784, hidden=(400,), latent_dim=20, likelihood="bernoulli", beta=1.0,
                 activation="relu", dtype=None, rng=None, k=1):
        self.hidden = list(check_sizes(input_dim, hidden, latent_dim, likelihood))
        if not beta >= 0:
            raise InputError(f"beta must be >= 0, got {beta!r}")
        self.k = positive_int(k, "k (importance samples per example)")
        self.input_dim, self.latent_dim, self.likelihood = input_dim, latent_dim, likelihood
        self.beta, self.activation, self.dtype = float(beta), activation, B.dtype_name(dtype)
        rng, c = B.as_generator(rng), self._condition_width
        self.encoder = mlp([input_dim + c, *self.hidden], activation, dtype, rng, last_activation=True)
        width = self.hidden[-1] if self.hidden else input_dim + c
        self.mu_head = Dense(width, latent_dim, rng=rng, dtype=dtype)
        self.logvar_head = Dense(width, latent_dim, rng=rng, dtype=dtype)
        self.reparam = Reparameterize()
        self.decoder = mlp([latent_dim + c, *reversed(self.hidden), input_dim], activation, dtype, rng)
        for first in ([self.encoder[0]] if self.hidden else [self.mu_head, self.logvar_head]):
            first.input_grad = False  # nothing needs the gradient w.r.t. the pixels
        self._loss_grads = None

    # The encoder reads _encoder_input(x), the decoder _decoder_input(z), and the decoder's input gradient becomes
    # dz through _latent_grad: the identity here; a conditional VAE appends (and drops) its one-hot labels.
    def _encoder_input(self, x):
        return x

    def _latent_grad(self, d_input):
        return d_input

    def _encode(self, x):
        """(mu, logvar) of a checked batch x (N, D): both heads read the encoder's last hidden features."""
        h = self.encoder.forward(self._encoder_input(x))
        return self.mu_head.forward(h), self.logvar_head.forward(h)

    def _encode_sample(self, x, eps=None, rng=None):
        """(mu, logvar, z) of a checked batch x: the encoder, both heads, and one z per example."""
        if B.fast_gpu():
            return self._encode_sample_fast(x, eps, rng)
        mu, logvar = self._encode(x)
        return mu, logvar, self.reparam.forward(mu, logvar, eps=eps, rng=rng)

    def _encode_sample_fast(self, x, eps=None, rng=None):
        """``_encode_sample`` with both heads' bias additions folded into the reparameterization's CuPy kernel
        (``Reparameterize.forward_heads_fast``): two launches fewer, the same numbers."""
        h = self.encoder.forward(self._encoder_input(x))
        mu_head, logvar_head = self.mu_head, self.logvar_head
        return self.reparam.forward_heads_fast(mu_head.forward_product(h), mu_head.b.data,
                                               logvar_head.forward_product(h), logvar_head.b.data, eps, rng)

    def _decode_raw(self, z):
        """The decoder's raw output (logits for bernoulli) for codes z (N, K); its layers keep what backward needs."""
        return self.decoder.forward(self._decoder_input(z))

    def encode(self, x):
        """(mu, logvar) of q(z|x) for each example."""
        return self._encode(self._input(x))

    def forward(self, x, eps=None, rng=None):
        """The decoder's raw output for one sampled z per example."""
        mu, logvar = self.encode(x)
        return self._decode_raw(self.reparam.forward(mu, logvar, eps=eps, rng=rng))

    def loss(self, x, eps=None, rng=None):
        """recon + beta * KL per example, for one z per example (``eps`` fixes the noise; else drawn from rng).

        With k > 1: the importance-weighted objective instead (``iwae.weighted_loss``; eps (N, k, K)).
        """
        x = self._input(x)
        if self.k > 1:
            return iwae.weighted_loss(self, x, eps, rng)
        mu, logvar, z = self._encode_sample(x, eps, rng)
        recon, dout = self._recon(self._decode_raw(z), x)
        kl, dmu_kl, dlogvar_kl = losses.gaussian_kl_fast(mu, logvar)
        self._loss_grads = (dout, dmu_kl, dlogvar_kl)
        return LossParts(losses.weighted_sum(recon, self.beta, kl), recon, kl)

    def loss_per_example(self, x, eps=None, rng=None):
        """{"loss", "recon", "kl"} as arrays (N,), for one z per example (k per example if k > 1), no gradient."""
        x = self._input(x)
        mu, logvar = self._encode(x)
        if self.k > 1:
            return iwae.weighted_per_example(self, x, mu, logvar, iwae.iwae_eps(self, x.shape[0], eps, rng))
        z = self.reparam.forward(mu, logvar, eps=eps, rng=rng)
        recon = self.recon_per_example(self._decode_raw(z), x)
        kl = losses.gaussian_kl_per_example(mu, logvar)
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}

    def backward(self):
        """Fill every parameter's .grad with the gradient of the last ``loss`` (its batch mean): the ELBO's
        (``elbo_backward``), or the importance-weighted objective's (``iwae.backward``) when that was the loss.

        Inputs: the upstream gradients ``loss`` kept in ``_loss_grads`` (see those two functions for their shapes).
        Returns None: the results are the parameters' .grad.
        """
        loss_grads = self._saved(self._loss_grads)
        if isinstance(loss_grads, iwae.Weighted):
            return iwae.backward(self, loss_grads)
        return self.elbo_backward(loss_grads)

    def elbo_backward(self, loss_grads):
        """The gradient of recon + beta * KL (batch mean) into every parameter's .grad (added, never zeroed).

        ``loss_grads`` = (dout, dmu_kl, dlogvar_kl) from ``loss``: dout (N, D) the reconstruction loss's gradient w.r.t.
        the decoder's output, dmu_kl and dlogvar_kl (N, K) the KL term's gradients w.r.t. mu and logvar.
            dz = decoder'(dout);   (dmu_recon, dlogvar_recon) = reparam'(dz)     (z = mu + exp(logvar / 2) * eps)
            dmu = dmu_recon + beta * dmu_kl;   dlogvar = dlogvar_recon + beta * dlogvar_kl
        Both heads' input gradients add up into the encoder (``_heads_backward``): dh (N, H). Returns None.
        """
        dout, dmu_kl, dlogvar_kl = loss_grads
        # The reconstruction term: back through the decoder to z, then through z = mu + exp(logvar / 2) * eps.
        dz = self._latent_grad(self.decoder.backward(dout))
        if B.fast_gpu():  # the three lines below in one fused kernel (kernels.latent_backward)
            from . import kernels
            eps, std = self.reparam._saved(self.reparam._cache)
            self._heads_backward(*kernels.latent_backward(dz, eps, std, dmu_kl, dlogvar_kl, self.beta))
            return
        dmu_recon, dlogvar_recon = self.reparam.backward(dz)
        # Where the two terms meet: the KL term's gradient is added at mu and logvar, weighted by beta.
        dmu = dmu_recon + self.beta * dmu_kl
        dlogvar = dlogvar_recon + self.beta * dlogvar_kl
        self._heads_backward(dmu, dlogvar)

    def log_prior(self, z):
        """log p(z) = -1/2 |z|^2 - K/2 log 2 pi under the prior N(0, I): z (..., K) -> (...). The IWAE's log weights
        (``iwae.log_weights``) call it, so a model with another prior (a GMVAE's mixture) is bounded with its own."""
        return -0.5 * (B.get_xp().sum(z * z, axis=-1) + z.shape[-1] * LOG_2PI)

    def _heads_backward(self, dmu, dlogvar):
        """Both heads read the same hidden features h, so their input gradients add up into the encoder:
        dh = dmu W_mu^T + dlogvar W_logvar^T.   dmu, dlogvar: (N, K); dh: (N, H)."""
        dh_mu, dh_logvar = self.mu_head.backward(dmu), self.logvar_head.backward(dlogvar)
        if len(self.encoder):  # empty when the heads read the pixels themselves (hidden=())
            self.encoder.backward(dh_mu + dh_logvar)

    # ------------------------------------------------------------------------------------------ using the model
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
        return self.decode(_path(self.encode(x_a)[0], self.encode(x_b)[0], steps, method, self.dtype))


def _path(mu_a, mu_b, steps, method, dtype):
    """Codes (steps, K) from mu_a to mu_b (each (1, K)): a straight line or a great-circle arc (slerp)."""
    if method not in ("linear", "slerp"):
        raise InputError(f"unknown interpolation {method!r}: expected 'linear' or 'slerp'")
    if int(steps) < 2:
        raise InputError(f"steps must be at least 2, got {steps!r}")
    xp = B.get_xp()
    t = xp.reshape(B.linspace(0.0, 1.0, int(steps), dtype=dtype), (-1, 1))
    if method == "linear":
        return (1.0 - t) * mu_a + t * mu_b
    cos = float(xp.sum(mu_a * mu_b)) / max(float(xp.sum(mu_a * mu_a) * xp.sum(mu_b * mu_b)) ** 0.5, 1e-12)
    omega = math.acos(min(1.0, max(-1.0, cos)))
    if omega < 1e-6:  # (nearly) parallel codes: slerp reduces to the straight line
        return (1.0 - t) * mu_a + t * mu_b
    return (xp.sin((1.0 - t) * omega) * mu_a + xp.sin(t * omega) * mu_b) / math.sin(omega)


class ConditionalVAE(VAE):
    """A conditional VAE (Sohn et al. 2015): the encoder q(z|x, y) and the decoder p(x|z, y) also see the label y.

        encoder input  [x, onehot(y)]   (N, D + C)        decoder input  [z, onehot(y)]   (N, K + C)

    The objective and its backward pass are the VAE's (k > 1 trains on the importance-weighted bound of log p(x|y));
    the gradient w.r.t. the decoder's input keeps only its z columns (the label is data, not a parameter). Since the
    decoder is told the class, z is free to carry the rest (the style): ``sample(n, digits=7)`` draws z ~ N(0, I) and
    decodes it as a 7. Every method that runs a network takes the labels: ``loss(x, y)``, ``encode(x, y)``,
    ``decode(z, y)``, ``reconstruct(x, y)``, ``sample(n, digits=...)``; labels are checked by
    ``losses.check_labels`` (integers in [0, num_classes), one per example).

    ``beta`` defaults to 4, not 1. The encoder sees x, so with beta = 1 a 20-dimensional code keeps much of the class
    too (it costs only about log 10 nats), and a prior draw z then pulls the decoder towards whatever class its
    region held: on MNIST (784-400-20, 22,699 images) the shipped classifier recognised the requested digit in
    only 46% of samples after 10 epochs and 71% after 30. beta = 4 prices the class out of the code (the label
    gives it for free): 89% after 5 epochs, 96% after 10, at the cost of a looser bound (docs/benchmarks.md).
    """

    kind = "cvae"
    needs_labels = True
    _config_keys = VAE._config_keys + ("num_classes",)

    def __init__(self, input_dim=784, hidden=(400,), latent_dim=20, num_classes=10, likelihood="bernoulli",
                 beta=4.0, activation="relu", dtype=None, rng=None, k=1):
        self.num_classes = positive_int(num_classes, "num_classes", 2)
        self._onehot = None
        self._labels_checked = False  # True while train.fit runs: it checked every label's range once, up front
        super().__init__(input_dim, hidden, latent_dim, likelihood, beta, activation, dtype, rng, k)

    @property
    def _condition_width(self):
        return self.num_classes

    def _condition(self, y, n, who):
        """Keep onehot(y) (n, C) for the networks' inputs: every public method sets it before running them."""
        if y is None:
            raise InputError(f"{who}: a conditional VAE needs the labels y, one class index per example")
        y = check_labels(y, n, self.num_classes, who, values=not self._labels_checked)
        self._onehot = losses._one_hot(y, self.num_classes, self._dtype)

    def _encoder_input(self, x):
        return B.concat([x, self._onehot], axis=1)

    def _decoder_input(self, z):
        xp, onehot = B.get_xp(), self._onehot
        if z.shape[0] != onehot.shape[0]:  # k codes per example (the IWAE), example by example: repeat each label
            n, c = onehot.shape
            onehot = xp.reshape(xp.broadcast_to(xp.expand_dims(onehot, axis=1), (n, z.shape[0] // n, c)), (-1, c))
        return B.concat([z, onehot], axis=1)

    def _latent_grad(self, d_input):
        return d_input[:, :self.latent_dim]

    def loss(self, x, y=None, eps=None, rng=None):
        """The VAE's loss of x given its labels y (N,) (see VAE.loss)."""
        x = self._input(x)
        self._condition(y, x.shape[0], "ConditionalVAE.loss")
        return super().loss(x, eps=eps, rng=rng)

    def loss_per_example(self, x, y=None, eps=None, rng=None):
        x = self._input(x)
        self._condition(y, x.shape[0], "ConditionalVAE.loss_per_example")
        return super().loss_per_example(x, eps=eps, rng=rng)

    def encode(self, x, y):
        """(mu, logvar) of q(z|x, y)."""
        x = self._input(x)
        self._condition(y, x.shape[0], "ConditionalVAE.encode")
        return self._encode(x)

    def decode(self, z, y, who="ConditionalVAE.decode"):
        """The mean image of p(x|z, y) for each code z (N, K) and label y (N,)."""
        z = B.asarray(z, dtype=self.dtype)
        self._condition(y, z.shape[0], who)
        return super().decode(z)

    def reconstruct(self, x, y):
        """Decode the posterior mean mu(x, y) with the label y."""
        return self.decode(self.encode(x, y)[0], y)

    def sample(self, n, rng=None, digits=None):
        """n new images of the digits asked for: z ~ N(0, I), decoded with each label.

        ``digits``: an int (all n the same), an (n,) integer array, or None (0, 1, ..., num_classes - 1, 0, ...).
        """
        xp, n = B.get_xp(), int(n)
        labels = B.arange(n) % self.num_classes if digits is None else B.asarray(digits)
        if labels.ndim == 0:
            labels = xp.broadcast_to(xp.reshape(labels, (1,)), (n,))
        z = B.as_generator(rng).standard_normal((n, self.latent_dim), self.dtype)
        return self.decode(z, labels, who="ConditionalVAE.sample: digits")

    def interpolate(self, x_a, y_a, x_b, y_b, digit=None, steps=8, method="linear"):
        """The path from mu(x_a, y_a) to mu(x_b, y_b) decoded as ``digit`` (default y_a): the style morphs, the
        class stays."""
        mu_a, mu_b = self.encode(x_a, [y_a])[0], self.encode(x_b, [y_b])[0]
        z = _path(mu_a, mu_b, steps, method, self.dtype)
        return self.decode(z, [y_a if digit is None else digit] * z.shape[0])
