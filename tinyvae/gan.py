"""The VAE-GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric").

A VAE's decoder is scored pixel by pixel, and the pixel-wise best guess for an uncertain digit is the average of
the digits it could be: a blur. The VAE-GAN adds a discriminator D, trained to tell data from decoded images, and
uses it twice: its hidden layer is the space in which reconstructions are measured (a learned similarity), and its
verdict is a GAN loss that pushes decoded images, reconstructions and prior samples alike, towards data.

With x_rec = dec(z), z ~ q(z|x), x_p = dec(z_p), z_p ~ N(0, I), f(.) D's last hidden layer and D(.) its logit:
    L_prior = KL(q(z|x) || N(0, I))                                   (nats per example)
    L_llike = 1/2 ||f(x) - f(x_rec)||^2                               (a Gaussian in D's hidden layer, per Larsen)
    L_pixel = BCE(dec(z), x)                                          (optional pixel term, weight ``pixel_weight``)
    L_rec   = L_llike + pixel_weight * L_pixel
    L_dis   = -mean over the N images of log s(D(x)) - mean over the 2N fakes of log(1 - s(D(x_fake)))
                                                                      (``discriminator_loss``)
    L_gen   = -mean over the 2N fakes of log s(D(x_fake))          (non-saturating, ``generator_loss``)
Each network minimises its own objective (Larsen's Algorithm 1):
    encoder: beta * L_prior + L_rec       decoder: gamma * L_rec + L_gen       discriminator: L_dis
All gradients of one step are taken at the same weights, then the three optimizers step. The discriminator does
not train on L_rec, and the encoder does not train on the GAN loss.

    model = VAEGAN(rng=0)
    history = fit(model, data.x_train, epochs=10)      # one Adam per network, one progress bar
"""
import math
import time

from tqdm.auto import tqdm

from . import backend as B
from . import losses
from .activations import LeakyReLU, sigmoid
from .layers import Dense
from .models import VAE
from .module import Module, Sequential
from .optim import Adam, PerNetwork, check_holds
from .checks import model_data, positive_int
from .errors import InputError
from .train import History, history_and_start


# ------------------------------------------------------------------------------------------------- the losses
def discriminator_loss(real_logits, fake_logits):
    """The discriminator's loss: BCE with target 1 on real images and target 0 on fakes, each set averaged.

    value = 1/N_r sum_r softplus(-l_r) + 1/N_f sum_f softplus(l_f)   (= -log s(l_r) and -log(1 - s(l_f)))
    Gradients: dl_r = (s(l_r) - 1) / N_r,  dl_f = s(l_f) / N_f.
    real_logits (N_r, 1), fake_logits (N_f, 1) -> (value: float, dreal (N_r, 1), dfake (N_f, 1)).
    """
    xp = B.get_xp()
    real_value, dreal = _bce(real_logits, xp.ones_like(real_logits))
    fake_value, dfake = _bce(fake_logits, xp.zeros_like(fake_logits))
    return real_value + fake_value, dreal, dfake


def _bce(logits, target):
    """``losses.bce_with_logits``; on CuPy its fused twin, whose value stays a 0-d device array (no read)."""
    return (losses.bce_with_logits_fast if B.backend_name() == "cupy" else losses.bce_with_logits)(logits, target)


def generator_loss(fake_logits):
    """The non-saturating generator loss: -1/N sum log s(l), BCE with target 1 on the fakes' logits.

    Minimising -log s(l) rather than log(1 - s(l)) gives a strong gradient exactly when D rejects the fakes
    (s(l) near 0), where log(1 - s(l)) saturates. Gradient: dl = (s(l) - 1) / N.
    fake_logits (N, 1) -> (value: float, dfake (N, 1)).
    """
    return _bce(fake_logits, B.get_xp().ones_like(fake_logits))


def feature_matching(real_features, fake_features):
    """Larsen's L_llike: 1/N sum_n 1/2 ||f(x_n) - f(x_rec_n)||^2, a unit Gaussian in D's hidden layer (up to a
    constant). Gradient w.r.t. the fakes' features only (the real images are data): df = (f_fake - f_real) / N.
    real_features, fake_features (N, F) -> (value: float, dfake (N, F)).
    """
    diff = fake_features - real_features
    n = diff.shape[0]
    value = B.get_xp().sum(diff * diff) * (0.5 / n)
    return (value if B.backend_name() == "cupy" else float(value)), diff / n  # on CuPy: read later, not here


def input_gradient(layers, dout):
    """The gradient w.r.t. the input of a stack of layers (after its forward), leaving every .grad untouched.

    Dense: dx = dout W^T (no dW, db); a layer without parameters (an activation): its own backward.
    dout: the output's shape -> the input's shape. This is how the decoder gets gradients through the
    discriminator without the discriminator learning from them.
    """
    for layer in reversed(list(layers)):
        if isinstance(layer, Dense):
            dout = dout @ layer.W.data.T
        elif layer.parameters():
            raise TypeError(f"input_gradient: {layer!r} has parameters but is not a Dense layer")
        else:
            dout = layer.backward(dout)
    return dout


# --------------------------------------------------------------------------------------------- the networks
class Discriminator(Module):
    """An MLP input_dim -> hidden... -> 1 with LeakyReLU(negative_slope) after every hidden layer.

    ``forward(x)`` returns the logits (N, 1) and keeps the last hidden layer's activations as ``self.features``
    (N, hidden[-1]): the space in which the VAE-GAN measures reconstructions.
    """

    def __init__(self, input_dim=784, hidden=(512, 256), negative_slope=0.2, dtype=None, rng=None):
        rng = B.as_generator(rng)
        sizes = [input_dim, *hidden]
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [Dense(n_in, n_out, rng=rng, dtype=dtype), LeakyReLU(negative_slope)]
        self.body = Sequential(*layers)
        self.head = Dense(sizes[-1], 1, rng=rng, dtype=dtype)
        self.body[0].input_grad = False  # backward fills the parameters; input_gradient walks the layers itself
        self.features = None

    def forward(self, x):
        self.features = self.body.forward(x)
        return self.head.forward(self.features)

    def backward(self, dlogits, dfeatures=None):
        """Fill the parameters' .grad: dh = dlogits W_head^T (+ dfeatures), then back through the body.

        dlogits (N, 1), dfeatures (N, F) or None. Returns None (the input gradient is ``input_gradient``'s job).
        """
        dh = self.head.backward(dlogits)
        self.body.backward(dh if dfeatures is None else dh + dfeatures)

    def input_gradient(self, dlogits, dfeatures=None):
        """dx for upstream gradients at the logits (N, 1) and the features (N, F) or None: (N, input_dim).

        The parameters' .grad are not touched: dx = body'(dlogits W_head^T + dfeatures).
        """
        dh = dlogits @ self.head.W.data.T
        return input_gradient(self.body, dh if dfeatures is None else dh + dfeatures)


class VAEGANLosses:
    """One step's figures, floats per example: the terms (kl, llike, pixel, gan, disc), the reconstruction term
    recon = llike + pixel_weight * pixel, and each network's objective: encoder = beta * kl + recon,
    decoder = gamma * recon + gan, discriminator = disc.
    """

    TERMS = ("kl", "llike", "pixel", "gan", "disc")
    __slots__ = TERMS + ("recon", "encoder", "decoder", "discriminator")

    def __init__(self, model, kl, llike, pixel, gan, disc):
        self.kl, self.llike, self.pixel, self.gan, self.disc = kl, llike, pixel, gan, disc
        self.recon = llike + model.pixel_weight * pixel
        self.encoder = model.beta * kl + self.recon
        self.decoder = model.gamma * self.recon + gan
        self.discriminator = disc

    def __repr__(self):
        return "VAEGANLosses(" + ", ".join(f"{k}={float(getattr(self, k)):.4f}" for k in self.__slots__) + ")"


class VAEGAN(VAE):
    """A VAE whose decoder is also a GAN generator, with a discriminator as its learned similarity (Larsen 2016).

    Encoder and decoder are the VAE's (Bernoulli decoder: its logits go through a sigmoid to make images in
    [0, 1]); ``disc_hidden`` sizes the discriminator (LeakyReLU(``negative_slope``)). ``gamma`` weighs the
    decoder's reconstruction term against the GAN term (the default 0.03 scores best, with sharp but blotchy
    samples at full size; 0.1 draws smoother ones that look more like digits, at a higher Frechet distance: see
    docs/benchmarks.md, "What the samples look like"); ``pixel_weight`` adds the VAE's pixel BCE to the
    reconstruction term (0 is Larsen's pure learned similarity; the default 1 keeps the MLP training stable, see
    docs/benchmarks.md). encode, decode, sample, reconstruct and interpolate are the VAE's; ``loss`` and
    ``backward`` are the VAE-GAN's three objectives (the module docstring), ``loss_per_example`` stays the VAE's
    negative ELBO, so ``evaluate`` and the IWAE bound report the encoder-decoder as a VAE.
    """

    kind = "vaegan"
    _config_keys = ("input_dim", "hidden", "latent_dim", "disc_hidden", "beta", "gamma", "pixel_weight",
                    "negative_slope", "activation", "dtype")

    def __init__(self, input_dim=784, hidden=(400,), latent_dim=20, disc_hidden=(512, 256), beta=1.0, gamma=0.03,
                 pixel_weight=1.0, negative_slope=0.2, activation="relu", dtype=None, rng=None):
        rng = B.as_generator(rng)
        super().__init__(input_dim, hidden, latent_dim, "bernoulli", beta, activation, dtype, rng)
        disc_hidden = [disc_hidden] if isinstance(disc_hidden, int) else list(disc_hidden)
        for name, value in (("gamma", gamma), ("pixel_weight", pixel_weight)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise InputError(f"VAEGAN: {name} must be a finite number >= 0, got {value!r}")
        if not disc_hidden:
            raise InputError("VAEGAN: disc_hidden must name one or more hidden layers, e.g. (512, 256)")
        for h in disc_hidden:
            positive_int(h, "VAEGAN: disc_hidden")
        self.disc_hidden, self.gamma, self.pixel_weight = disc_hidden, float(gamma), float(pixel_weight)
        self.negative_slope = float(negative_slope)
        self.discriminator = Discriminator(input_dim, disc_hidden, negative_slope, dtype, rng)
        self.decoder[0].input_grad = False  # the encoder's dz comes from input_gradient (see backward)

    def networks(self):
        """{"encoder", "decoder", "discriminator"}: each network's parameters, in ``parameters()`` order."""
        encoder = [*self.encoder.parameters(), *self.mu_head.parameters(), *self.logvar_head.parameters()]
        return {"encoder": encoder, "decoder": self.decoder.parameters(),
                "discriminator": self.discriminator.parameters()}

    def _forward_all(self, x, eps, z_prior, rng):
        """Encoder, decoder on [z; z_p] (2N rows), discriminator on [x; x_rec; x_p] (3N rows), in one pass each."""
        mu, logvar = self._encode(x)  # x is checked by loss
        z = self.reparam.forward(mu, logvar, eps=eps, rng=rng)
        if z_prior is None:
            z_prior = rng.standard_normal(tuple(z.shape), self.dtype)
        z_prior = B.asarray(z_prior, dtype=self.dtype)
        if tuple(z_prior.shape) != tuple(z.shape):
            raise ValueError(f"VAEGAN.loss: z_prior must have shape {tuple(z.shape)}, got {tuple(z_prior.shape)}")
        out = self.decoder.forward(B.concat([z, z_prior], axis=0))
        images = sigmoid(out)
        logits = self.discriminator.forward(B.concat([x, images], axis=0))
        return mu, logvar, out, images, logits, self.discriminator.features

    def loss(self, x, eps=None, z_prior=None, rng=None):
        """Every term and objective of one step (``VAEGANLosses``); ``backward()`` then fills all the gradients.

        ``eps`` (N, K) fixes q's noise and ``z_prior`` (N, K) the prior codes; what is not given is drawn from
        ``rng`` (eps first, then z_prior).
        """
        x = self._input(x)
        n = x.shape[0]
        if eps is None or z_prior is None:
            rng = B.as_generator(rng)
        mu, logvar, out, images, logits, feats = self._forward_all(x, eps, z_prior, rng)
        kl, dmu_kl, dlogvar_kl = losses.gaussian_kl_fast(mu, logvar)
        pixel, dpixel = losses.bce_with_logits_fast(out[:n, :], x)
        # kl and pixel: floats, or 0-d device arrays on CuPy like every other term (read by gan.fit's checks)
        llike, dfeat = feature_matching(feats[:n, :], feats[n:2 * n, :])
        disc, dreal, dfake = discriminator_loss(logits[:n, :], logits[n:, :])
        gan, dgen = generator_loss(logits[n:, :])
        self._loss_grads = dict(n=n, images=images, dmu_kl=dmu_kl, dlogvar_kl=dlogvar_kl, dpixel=dpixel,
                                dfeat=dfeat, dreal=dreal, dfake=dfake, dgen=dgen)
        return VAEGANLosses(self, kl, llike, pixel, gan, disc)

    def backward(self):
        """Fill each network's .grad with the gradient of ITS objective at the last ``loss`` (added, never zeroed).

        1. discriminator: L_dis back through D (dlogits for [x; x_rec; x_p]).
        2. The gradients at the decoded images, through D without touching D's .grad (``input_gradient``):
           d L_llike / d x_rec from the features, d L_gen / d [x_rec; x_p] from the logits.
        3. Through the sigmoid x = s(out): d out = d x * x (1 - x); the pixel BCE adds its gradient at out.
        4. encoder: d L_rec / d z by ``input_gradient`` through the decoder, then the reparameterization; beta
           times the KL gradient joins at mu and logvar (as in VAE.backward).
        5. decoder: one backward with gamma * d L_rec / d out + d L_gen / d out.
        Shapes: x (N, D), z and z_p (N, K), the decoder's out (2N, D), D's logits (3N, 1) and features (3N, F).
        """
        g = self._saved(self._loss_grads)
        n, images, xp = g["n"], g["images"], B.get_xp()
        disc = self.discriminator
        disc.backward(B.concat([g["dreal"], g["dfake"]], axis=0))
        zeros_logits = B.zeros((3 * n, 1), self.dtype)
        dfeat = B.concat([xp.zeros_like(g["dfeat"]), g["dfeat"], xp.zeros_like(g["dfeat"])], axis=0)
        dimg_llike = disc.input_gradient(zeros_logits, dfeat)[n:2 * n, :]
        dimg_gen = disc.input_gradient(B.concat([zeros_logits[:n, :], g["dgen"]], axis=0))[n:, :]
        slope = images * (1.0 - images)
        drec = dimg_llike * slope[:n, :] + self.pixel_weight * g["dpixel"]  # d L_rec / d out, rows of x_rec
        dgen = dimg_gen * slope  # d L_gen / d out, all 2N rows
        self._encoder_backward(drec, g)
        self.decoder.backward(dgen + B.concat([self.gamma * drec, xp.zeros_like(drec)], axis=0))

    def _encoder_backward(self, drec, g):
        """The encoder's gradient of beta * L_prior + L_rec, with d L_rec / d out (N, D) at the reconstructions.

        drec: (N, D); g: the upstream gradients ``loss`` kept in ``_loss_grads`` (dmu_kl, dlogvar_kl: (N, K));
        dz: (N, K). Returns None: the results are the encoder's and the heads' .grad."""
        xp = B.get_xp()
        dz = input_gradient(self.decoder, B.concat([drec, xp.zeros_like(drec)], axis=0))[:g["n"], :]
        dmu, dlogvar = self.reparam.backward(dz)
        dmu = dmu + self.beta * g["dmu_kl"]
        dlogvar = dlogvar + self.beta * g["dlogvar_kl"]
        self._heads_backward(dmu, dlogvar)


# -------------------------------------------------------------------------------------------- training
class VAEGANHistory(History):
    """Per-epoch means of a VAE-GAN run (nats per example), one list per key, like ``train.History``.

    train_loss is the encoder's objective (beta * kl + recon), train_recon = llike + pixel_weight * pixel; the
    other keys are the terms of the module docstring; epoch_time the seconds of each epoch. No validation.
    """

    KEYS = ("train_loss", "train_recon", "train_kl", "train_llike", "train_pixel", "train_gan", "train_disc",
            "epoch_time")

    def __repr__(self):
        if not self.epochs:
            return "VAEGANHistory(epochs=0)"
        return (f"VAEGANHistory(epochs={self.epochs[-1]}, " + ", ".join(
            f"{k[6:]}={getattr(self, k)[-1]:.4f}" for k in self.KEYS[2:-1]) + ")")


def make_optimizers(model, lr=1e-3, disc_lr=2e-4, betas=(0.5, 0.999)):
    """``optim.PerNetwork`` with one Adam per network of ``model.networks()``: ``lr`` for the encoder and the
    decoder (the VAE's usual 1e-3), ``disc_lr`` for the discriminator (None: ``lr``). A slower discriminator keeps
    the game balanced: with all three networks at 2e-4 it won early and the samples collapsed onto a few digits
    (docs/benchmarks.md). beta1 = 0.5, as GANs usually train (Radford et al. 2016): less momentum against a moving opponent."""
    return PerNetwork({name: Adam(params, lr=disc_lr if (name == "discriminator" and disc_lr) else lr,
                                  betas=betas) for name, params in model.networks().items()})


_FIGURES = (("train_kl", "kl"), ("train_llike", "llike"), ("train_pixel", "pixel"), ("train_gan", "gan"),
            ("train_disc", "disc"), ("train_loss", "encoder"), ("train_recon", "recon"))


def _step(model, optimizers, xb, gen, epoch, step, steps):
    """One step of every network; a non-finite loss stops before the update, naming the epoch and step."""
    optimizers.zero_grad()
    parts = model.loss(xb, rng=gen)
    if not B.backend_name() == "cupy":  # on CuPy the terms stay on the device: train_epoch checks them in blocks
        _check_finite([getattr(parts, k) for k in VAEGANLosses.TERMS], epoch, step, steps)
    model.backward()
    optimizers.step()
    return parts


def _check_finite(terms, epoch, step, steps, restored=None):
    """Stop on the first non-finite term of one step (``VAEGANLosses.TERMS`` order), naming it and the step."""
    bad = [(k, v) for k, v in zip(VAEGANLosses.TERMS, terms) if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(
            f"gan.fit: the loss {bad[0][0]} became {bad[0][1]} at epoch {epoch + 1}, step {step + 1} of {steps}; "
            "try a smaller lr, a smaller gamma or a larger pixel_weight "
            + ("(the weights are unchanged)" if restored is None else
               f"(weights restored to step {restored} of that epoch: on CuPy the losses are read every "
               f"{CHECK_EVERY} steps)"))


# On CuPy the figures of CHECK_EVERY steps are read from the device at once (each read waits for the GPU); the
# weights and optimizer state saved at the last read are put back if one of them is not finite.
CHECK_EVERY = 50


def _read_block(model, optimizers, pending, sums, saved, epoch, steps):
    """Add the pending (step, batch size, figures vector) to ``sums`` with ONE read from the device; on a non-finite
    term, restore ``saved`` (weights, optimizer state) and stop."""
    xp = B.get_xp()
    rows = B.to_numpy(xp.stack([vec for _, _, vec in pending])).tolist()
    for (step, m, _), row in zip(pending, rows):
        if not all(math.isfinite(v) for v in row[:len(VAEGANLosses.TERMS)]):
            for p, data in zip(model.parameters(), saved[0]):
                p.data[...] = data
            optimizers.load_state_dict(saved[1])
            _check_finite(row, epoch, step, steps, restored=pending[0][0])
        for (key, _), v in zip(_FIGURES, row):
            sums[key] += m * v
    pending.clear()


def _figures(parts):
    """The _FIGURES of one step as one float64 vector on the device (CuPy), so that a block is read at once."""
    xp = B.get_xp()
    return xp.stack([B.astype(B.asarray(v, dtype="float64") if not B.is_array(v) else v, "float64")
                     for v in (getattr(parts, name) for _, name in _FIGURES)])


def _save(model, optimizers):
    return [B.copy(p.data) for p in model.parameters()], optimizers.state_dict()


def train_epoch(model, x, optimizers, batch_size, seed, epoch, bar):
    """One epoch: shuffle with ``Generator((seed, epoch))``, which also draws every eps and z_p; returns
    {history key: sum over examples}."""
    xp = B.get_xp()
    n = x.shape[0]
    steps = math.ceil(n / batch_size)
    gen = B.Generator((seed, epoch))
    perm = gen.permutation(n)
    sums = dict.fromkeys((key for key, _ in _FIGURES), 0.0)
    deferred, pending = B.backend_name() == "cupy", []
    saved = _save(model, optimizers) if deferred else None
    for step in range(steps):
        xb = xp.take(x, perm[step * batch_size:min(n, (step + 1) * batch_size)], axis=0)
        parts = _step(model, optimizers, xb, gen, epoch, step, steps)
        bar.update(1)
        if deferred:
            pending.append((step, xb.shape[0], _figures(parts)))
            if (step + 1) % CHECK_EVERY == 0 or step + 1 == steps:
                _read_block(model, optimizers, pending, sums, saved, epoch, steps)
                saved = _save(model, optimizers) if step + 1 < steps else None
            continue
        for key, name in _FIGURES:
            sums[key] += xb.shape[0] * getattr(parts, name)
        bar.set_postfix({name: f"{getattr(parts, name):.3g}" for name in VAEGANLosses.TERMS}, refresh=False)
    return sums


def _checked_args(model, x_train, epochs, batch_size, optimizers, rates, start_epoch, history):
    if not isinstance(model, VAEGAN):
        raise TypeError(f"gan.fit trains a VAEGAN, got {type(model).__name__} (train.fit trains the others)")
    positive_int(epochs, "gan.fit: epochs", 0)
    positive_int(batch_size, "gan.fit: batch_size")
    history, start_epoch = history_and_start(history, start_epoch, VAEGANHistory, "gan.fit")
    if optimizers is None:
        optimizers = make_optimizers(model, *rates)
    else:
        check_holds(optimizers, model, "gan.fit", "build the optimizers with gan.make_optimizers(model)")
    return model_data(model, x_train, "gan.fit: x_train"), optimizers, start_epoch, history


def fit(model, x_train, epochs, batch_size=128, optimizers=None, seed=0, progress=True, lr=1e-3, disc_lr=2e-4,
        start_epoch=None, history=None, callback=None):
    """Train a VAEGAN for ``epochs`` more epochs; returns its VAEGANHistory (extended in place if given).

    Each step: ``optimizers.zero_grad(); model.loss(xb, rng=gen); model.backward(); optimizers.step()``, the
    three networks stepping on gradients taken at the same weights. ``optimizers`` defaults to
    ``make_optimizers(model, lr, disc_lr)`` (both ignored when optimizers are given). As in ``train.fit``: epoch e draws its shuffle and noise from
    ``Generator((seed, e))``, ``start_epoch`` (default ``len(history)``) makes a resumed run exact, a non-finite
    loss stops with FloatingPointError before that step's update, ``callback(epoch, history)`` runs after each
    epoch, and one ``tqdm.auto`` bar covers the run, showing every loss of the last step.
    """
    x, optimizers, start_epoch, history = _checked_args(model, x_train, epochs, batch_size, optimizers,
                                                        (lr, disc_lr), start_epoch, history)
    end, steps = start_epoch + epochs, math.ceil(x.shape[0] / batch_size)
    model.train()
    with tqdm(total=steps * epochs, unit="batch", disable=not progress, dynamic_ncols=True) as bar:
        for epoch in range(start_epoch, end):
            bar.set_description(f"epoch {epoch + 1}/{end}", refresh=False)
            start = time.perf_counter()
            sums = train_epoch(model, x, optimizers, batch_size, seed, epoch, bar)
            B.synchronize()
            history.epoch_time.append(time.perf_counter() - start)
            history.epochs.append(epoch + 1)
            for key, total in sums.items():
                getattr(history, key).append(total / x.shape[0])
            if callback is not None:
                callback(epoch + 1, history)
    return history
