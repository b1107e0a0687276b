"""The semi-supervised VAE M2 (Kingma et al. 2014), as in Stanford CS236's homework 2, and its training loop.

Three MLPs: a classifier q(y|x), an encoder q(z|x, y) and a decoder p(x|z, y). An unlabeled image's label is
summed out by enumerating all C classes, each weighted by the classifier's belief pi = q(y|x):

    U(x) = sum_c pi_c [rec(x; c) + KL(q(z|x, c) || N(0, I))] + KL(pi || uniform),
    rec(x; c) = -log p(x | z_c, c),  z_c = mu(x, c) + exp(logvar(x, c) / 2) * eps_c,
    KL(pi || uniform) = sum_c pi_c log pi_c + log C,

an upper bound on -log p(x) (the negative ELBO of the joint model). The few labeled images train the classifier
directly with a weighted cross-entropy:

    loss = gen_weight * 1/N sum_n U(x_n) + class_weight * 1/M sum_m CE(q(y|x_m), y_m).

gen_weight = 0 is the classifier trained on the labeled images alone (the baseline); the generative term is what
lets the unlabeled images shape the classifier, through pi's weights on every enumerated term.
"""
import math
import time

from tqdm.auto import tqdm

from . import backend as B
from . import losses
from .activations import sigmoid
from .checks import positive_int as _positive_int
from .errors import InputError
from .layers import Dense
from .losses import LossParts
from .models import ModelBase, mlp
from .optim import Adam
from .reparam import Reparameterize
from .train import History, bernoulli_binarize  # noqa: F401  (also public here: ssvae.bernoulli_binarize)


def kl_categorical_uniform(pi):
    """KL(pi || uniform) = sum_c pi_c log pi_c + log C for each row of pi (N, C): (N,). pi_c log pi_c = 0 at 0."""
    xp = B.get_xp()
    safe = xp.where(pi > 0, pi, xp.ones_like(pi))
    return xp.sum(pi * xp.log(safe), axis=1) + math.log(pi.shape[1])


class SSVAE(ModelBase):
    """M2: classifier q(y|x), encoder q(z|x, y), decoder p(x|z, y), with labels enumerated for unlabeled images.

    ``loss(x, xl, yl, eps=None, rng=None)``: x (N, D) unlabeled images, xl (M, D) and yl (M,) labeled ones (may be
    None: then only the generative term), eps (N, C, d) fixes the noise. ``backward()`` then fills every .grad.
    Defaults are CS236's: 784-300-300 ELU MLPs, latent 64, 10 classes, gen_weight 1, class_weight 100.
    """

    kind = "ssvae"
    likelihood = "bernoulli"
    _config_keys = ("input_dim", "hidden", "latent_dim", "num_classes", "gen_weight", "class_weight", "activation",
                    "dtype")

    def __init__(self, input_dim=784, hidden=(300, 300), latent_dim=64, num_classes=10, gen_weight=1.0,
                 class_weight=100.0, activation="elu", dtype=None, rng=None):
        self.hidden = [hidden] if isinstance(hidden, int) else list(hidden)
        for name, n in [("input_dim", input_dim), ("latent_dim", latent_dim)] + [("hidden", h) for h in self.hidden]:
            _positive_int(n, name)
        if not self.hidden:
            raise InputError("SSVAE: hidden must name at least one layer size")
        self.num_classes = _positive_int(num_classes, "num_classes", 2)
        if not (gen_weight >= 0 and class_weight >= 0):
            raise InputError(f"SSVAE: gen_weight and class_weight must be >= 0, got {gen_weight!r}, {class_weight!r}")
        self.input_dim, self.latent_dim, self.activation = input_dim, latent_dim, activation
        self.gen_weight, self.class_weight, self.dtype = float(gen_weight), float(class_weight), B.dtype_name(dtype)
        rng, c = B.as_generator(rng), self.num_classes
        self.classifier = mlp([input_dim, *self.hidden, c], activation, dtype, rng)
        self.encoder = mlp([input_dim + c, *self.hidden], activation, dtype, rng, last_activation=True)
        self.mu_head = Dense(self.hidden[-1], latent_dim, rng=rng, dtype=dtype)
        self.logvar_head = Dense(self.hidden[-1], latent_dim, rng=rng, dtype=dtype)
        self.reparam = Reparameterize()
        self.decoder = mlp([latent_dim + c, *reversed(self.hidden), input_dim], activation, dtype, rng)
        self.classifier[0].input_grad = self.encoder[0].input_grad = False  # no gradient w.r.t. the pixels
        self._loss_grads = None

    # ------------------------------------------------------------------------------------------- the pieces
    def _enumerated(self, x):
        """(x repeated C times, onehot of each class): both (N * C, .), row n * C + c holds (x_n, e_c)."""
        xp, (n, d), c = B.get_xp(), x.shape, self.num_classes
        x_rep = xp.reshape(xp.broadcast_to(xp.expand_dims(x, axis=1), (n, c, d)), (n * c, d))
        return x_rep, self._class_rows(n)

    def _class_rows(self, n):
        """e_0, e_1, ..., e_{C-1} once for each of n images: the label columns of the enumerated rows, (n * C, C)."""
        xp, c = B.get_xp(), self.num_classes
        eye = losses._one_hot(B.arange(c), c, self._dtype)
        return xp.reshape(xp.broadcast_to(xp.expand_dims(eye, axis=0), (n, c, c)), (n * c, c))

    def _eps(self, n, eps, rng):
        shape = (n * self.num_classes, self.latent_dim)
        if eps is None:
            return B.as_generator(rng).standard_normal(shape, self.dtype)
        eps = B.asarray(eps, dtype=self._dtype)
        if tuple(eps.shape) != (n, self.num_classes, self.latent_dim):
            raise InputError(f"SSVAE: eps must have shape (N, C, d) = {(n, self.num_classes, self.latent_dim)}; "
                             f"got {tuple(eps.shape)}")
        return B.get_xp().reshape(eps, shape)

    def _generative_terms(self, x, eps, rng):
        """(rec, kl_z) per enumerated row (N * C,), and what backward needs, for a checked batch x (N, D)."""
        x_rep, onehot = self._enumerated(x)
        h = self.encoder.forward(B.concat([x_rep, onehot], axis=1))
        mu, logvar = self.mu_head.forward(h), self.logvar_head.forward(h)
        z = self.reparam.forward(mu, logvar, eps=self._eps(x.shape[0], eps, rng))
        out = self.decoder.forward(B.concat([z, onehot], axis=1))
        rec = losses.bce_with_logits_per_example(out, x_rep)
        return rec, losses.gaussian_kl_per_example(mu, logvar), ("rows", x_rep, out, mu, logvar)

    def _terms(self, x, eps, rng):
        """``_generative_terms``, or its fast twin outside plain mode."""
        return (self._generative_terms if B.plain() else self._generative_terms_fast)(x, eps, rng)

    def classify(self, x):
        """The classifier's logits (N, C) for images x (N, D)."""
        self._loss_grads = None
        return self.classifier.forward(self._input(x))

    def predict(self, x, batch_size=1000):
        """The most likely class of each image under q(y|x): integers (N,)."""
        xp = B.get_xp()
        x = self._input(x)
        return B.concat([xp.argmax(self.classifier.forward(x[a:min(a + batch_size, x.shape[0]), :]), axis=1)
                         for a in range(0, x.shape[0], batch_size)], axis=0)

    def accuracy(self, x, y):
        """The fraction of images whose predicted class is y (a float)."""
        y = losses.check_labels(B.asarray(y), x.shape[0], self.num_classes, "SSVAE.accuracy")
        return float(B.get_xp().mean(B.astype(self.predict(x) == y, "float64")))

    # ------------------------------------------------------------------------------------------- the objective
    def loss(self, x, xl=None, yl=None, eps=None, rng=None, labels_checked=False):
        """gen_weight * mean_n U(x_n) + class_weight * mean_m CE(q(y|xl_m), yl_m) (see the module docstring).

        LossParts: total; recon = mean_n sum_c pi_nc rec_nc; kl = mean_n [sum_c pi_nc KL_z,nc + KL(pi_n || U)].
        With gen_weight = 0 only the classifier runs (on xl, which must then be given), and recon = kl = 0.
        ``labels_checked=True`` skips checking that yl's values lie in [0, C) (a read from the device): for a
        training loop that checked them once (``fit_iterations``).
        """
        xp = B.get_xp()
        x = self._input(x)
        n, c = x.shape[0], self.num_classes
        if xl is None and self.gen_weight == 0:
            raise InputError("SSVAE.loss: with gen_weight = 0 only the labeled images train the classifier: give xl, yl")
        xl = x[:0, :] if xl is None else self._input(xl)
        yl = B.arange(0) if yl is None else losses.check_labels(B.asarray(yl), xl.shape[0], c, "SSVAE.loss",
                                                                values=not labels_checked)
        if self.gen_weight == 0:  # the classifier alone: skip the generative terms, which would be weighted by 0
            ce, dlogits_l = losses.softmax_cross_entropy_fast(self.classifier.forward(xl), yl)
            self._loss_grads = (None, None, None, dlogits_l)
            return LossParts(self.class_weight * ce, 0.0, 0.0)
        logits = self.classifier.forward(B.concat([x, xl], axis=0))
        pi = xp.exp(losses._log_softmax(logits[:n, :]))  # (N, C)
        rec, kl_z, saved = self._terms(x, eps, rng)
        rec, kl_z = xp.reshape(rec, (n, c)), xp.reshape(kl_z, (n, c))
        kl_y = kl_categorical_uniform(pi)
        recon, kl = xp.sum(pi * rec) / n, (xp.sum(pi * kl_z) + xp.sum(kl_y)) / n
        ce, dlogits_l = (losses.softmax_cross_entropy_fast(logits[n:, :], yl) if xl.shape[0] else (0.0, logits[n:, :]))
        self._loss_grads = (pi, rec + kl_z, saved, dlogits_l)
        return LossParts(self.gen_weight * (recon + kl) + self.class_weight * ce, recon, kl)

    def loss_per_example(self, x, eps=None, rng=None):
        """{"loss", "recon", "kl"} (N,): U(x) of each unlabeled image (the bound on -log p(x)), no gradient."""
        xp = B.get_xp()
        x = self._input(x)
        n, c = x.shape[0], self.num_classes
        pi = xp.exp(losses._log_softmax(self.classifier.forward(x)))
        rec, kl_z, _ = self._terms(x, eps, rng)
        recon = xp.sum(pi * xp.reshape(rec, (n, c)), axis=1)
        kl = xp.sum(pi * xp.reshape(kl_z, (n, c)), axis=1) + kl_categorical_uniform(pi)
        return {"loss": recon + kl, "recon": recon, "kl": kl}

    def backward(self):
        """Fill every parameter's .grad with the gradient of the last ``loss``.

        With w = gen_weight / N, A_nc = rec_nc + KL_z,nc and pi_n = softmax(l_n):
            d/d pi_nc        = w (A_nc + log pi_nc + 1)                         (the enumeration and KL(pi || U))
            d/d l_n          = pi_n * (g_n - sum_c pi_nc g_nc),  g_n = d/d pi_n  (softmax backward)
            d/d out_nc       = w pi_nc (sigmoid(out_nc) - x_n)                  (each class's reconstruction)
            d/d (mu, logvar) = w pi_nc [reparam.backward(dz_nc) + (mu, (exp(logvar) - 1) / 2)]
        and the labeled rows' logits get class_weight * (softmax(l) - onehot(y)) / M.
        Shapes: pi, A, g (N, C); out (N * C, D); mu, logvar, z (N * C, d); logits ((N + M), C).
        """
        xp = B.get_xp()
        pi, a, saved, dlogits_l = self._saved(self._loss_grads)
        if pi is None:  # gen_weight = 0: the labeled cross-entropy alone
            self.classifier.backward(self.class_weight * dlogits_l)
            return
        # "rows": x_in is x repeated (N * C, D), out the logits; "split": x itself (N, D), out = sigmoid(logits) - x
        layout, x_in, out, mu, logvar = saved
        n, c = pi.shape
        w = self.gen_weight / n
        safe = xp.where(pi > 0, pi, xp.ones_like(pi))
        g = w * (a + xp.log(safe) + 1.0)
        dlogits_u = pi * (g - xp.sum(pi * g, axis=1, keepdims=True))
        self.classifier.backward(B.concat([dlogits_u, self.class_weight * dlogits_l], axis=0))
        row_w = xp.reshape(w * pi, (n * c, 1))  # each enumerated row's weight in the batch mean
        if layout == "rows":
            dout = (sigmoid(out) - x_in) * row_w
        else:  # sigmoid(logits) - x came with the BCE's value (N, C, D): weight each row
            dout = xp.reshape(out * xp.expand_dims(w * pi, axis=2), (n * c, -1))
        dz = self.decoder.backward(dout)[:, :self.latent_dim]  # the label columns are data, not parameters
        dmu, dlogvar = self.reparam.backward(dz)
        dmu = dmu + row_w * mu
        dlogvar = dlogvar + row_w * 0.5 * (xp.exp(logvar) - 1.0)
        dh = self.mu_head.backward(dmu) + self.logvar_head.backward(dlogvar)
        if layout == "rows":
            self.encoder.backward(dh)
        else:
            self._encoder_split_backward_fast(dh, x_in)

    # ------------------------------------------------------------------------------------------- the fast twins
    # ``_generative_terms`` and its backward without the C copies of x. Tests keep them equal to the plain ones.
    def _generative_terms_fast(self, x, eps, rng):
        """``_generative_terms`` without building [x_n, e_c] (N * C, D + C): the encoder's first product splits at
        the label columns, [x, e_c] W = x W_x + W_y[c], so x W_x is made once per image, not once per class; and
        the BCE reads x broadcast against the (N, C, D) logits, its gradient sigmoid(out) - x made from the same
        exp. Saved for backward: x itself (not x repeated) and that gradient (N, C, D) instead of the logits."""
        xp, (n, d), c = B.get_xp(), x.shape, self.num_classes
        h = self._encoder_split_fast(x)
        mu, logvar = self.mu_head.forward(h), self.logvar_head.forward(h)
        z = self.reparam.forward(mu, logvar, eps=self._eps(n, eps, rng))
        out = self.decoder.forward(B.concat([z, self._class_rows(n)], axis=1))
        rec, dout = losses.bce_rows_with_grad_fast(xp.reshape(out, (n, c, d)), xp.expand_dims(x, axis=1))
        return xp.reshape(rec, (n * c,)), losses.gaussian_kl_per_example(mu, logvar), ("split", x, dout, mu, logvar)

    def _encoder_split_fast(self, x):
        """The encoder on every (x_n, e_c): its first layer as x_n W_x + W_y[c] + b (N * C, H), then the rest."""
        xp, first, (n, d) = B.get_xp(), self.encoder[0], x.shape
        w = first.W.data
        pre = xp.expand_dims(x @ w[:d, :] + first.b.data, axis=1) + xp.expand_dims(w[d:, :], axis=0)  # (N, C, H)
        h = xp.reshape(pre, (n * self.num_classes, w.shape[1]))
        for layer in self.encoder.layers[1:]:
            h = layer.forward(h)
        return h

    def _encoder_split_backward_fast(self, dh, x):
        """Backward of ``_encoder_split_fast``: the later layers as usual, then the split first layer, with
        dpre_nc the gradient at x_n W_x + W_y[c] + b:
            dW_x = x^T sum_c dpre_nc,   dW_y[c] = sum_n dpre_nc,   db = sum_n,c dpre_nc.
        dh (N * C, H_last); x (N, D); dpre (N, C, H); dW (D + C, H) as [dW_x; dW_y]."""
        xp, first = B.get_xp(), self.encoder[0]
        for layer in reversed(self.encoder.layers[1:]):
            dh = layer.backward(dh)
        dpre = xp.reshape(dh, (x.shape[0], self.num_classes, -1))
        per_image = xp.sum(dpre, axis=1)  # (N, H)
        first.W.accumulate(B.concat([x.T @ per_image, xp.sum(dpre, axis=0)], axis=0))
        first.b.accumulate(xp.sum(per_image, axis=0))

    # ------------------------------------------------------------------------------------------- using the model
    def decode(self, z, y):
        """The mean image of p(x|z, y) for codes z (N, d) and labels y (N,)."""
        self._loss_grads = None
        z = B.asarray(z, dtype=self.dtype)
        y = losses.check_labels(B.asarray(y), z.shape[0], self.num_classes, "SSVAE.decode")
        onehot = losses._one_hot(y, self.num_classes, self._dtype)
        return sigmoid(self.decoder.forward(B.concat([z, onehot], axis=1)))

    def sample(self, n, rng=None, digits=None):
        """n images of the digits asked for (an int, an (n,) array, or None for 0, 1, ..., C - 1, 0, ...):
        z ~ N(0, I) decoded with each label."""
        xp, n = B.get_xp(), int(n)
        labels = B.arange(n) % self.num_classes if digits is None else B.asarray(digits)
        if labels.ndim == 0:
            labels = xp.broadcast_to(xp.reshape(labels, (1,)), (n,))
        return self.decode(B.as_generator(rng).standard_normal((n, self.latent_dim), self.dtype), labels)


# ----------------------------------------------------------------------------------------------- training
def fit(model, x, xl, yl, iterations, batch_size=97, lr=1e-3, seed=0, binarize="dynamic", progress=True,
        record_every=None, optimizer=None, history=None):
    """Train an SSVAE for ``iterations`` Adam steps (``fit_iterations``): each step takes a batch of unlabeled
    images x and ALL the labeled images xl (M, D), yl (M,), each binarized afresh when ``binarize == "dynamic"``
    (the homework's: 100 labeled images, 10 per class, drawn anew at every step). Returns a ``train.History``."""
    return fit_iterations(model, x, iterations, batch_size=batch_size, lr=lr, seed=seed, binarize=binarize,
                          progress=progress, record_every=record_every, optimizer=optimizer, history=history,
                          labeled=(xl, yl))


def fit_iterations(model, x, iterations, batch_size=97, lr=1e-3, seed=0, binarize="dynamic", progress=True,
                   record_every=None, optimizer=None, history=None, labeled=None):
    """CS236's training loop: ``iterations`` Adam steps of ``model.loss(xb, rng=...)``; a History.

    Batches of ``batch_size`` images come from a fresh shuffle of x at each pass, drawn from ``Generator((seed,
    pass))``, which then draws each batch's binarization (a new Bernoulli draw when ``binarize == "dynamic"``;
    "none": the images as they are) and the model's noise. ``labeled`` = (xl, yl), for an SSVAE: every step also
    passes all of them, ``model.loss(xb, xl_b, yl, ...)``, xl binarized afresh like the batch (the homework's).
    One History entry per ``record_every`` steps (default: one pass over x): ``epochs`` holds the steps done,
    ``train_*`` the means over those steps, ``epoch_time`` their seconds. The losses are summed on the device and
    read once per entry, so a step never waits for a GPU.
    """
    if binarize not in ("dynamic", "none"):
        raise InputError(f"fit_iterations: binarize must be 'dynamic' or 'none', got {binarize!r}")
    _positive_int(iterations, "fit_iterations: iterations", 0)
    _positive_int(batch_size, "fit_iterations: batch_size")
    xp = B.get_xp()
    x = B.asarray(x, dtype=model.dtype)
    xl, yl = _labeled(model, labeled)
    steps_per_pass = math.ceil(x.shape[0] / batch_size)
    record_every = record_every or steps_per_pass
    optimizer = optimizer or Adam(model.parameters(), lr=lr)
    history = history or History()
    sums, count, start, gen, perm = [], 0, time.perf_counter(), None, None
    model.train()
    with tqdm(total=iterations, unit="step", disable=not progress, dynamic_ncols=True, desc=model.kind) as bar:
        for step in range(iterations):
            epoch, i = divmod(step, steps_per_pass)
            if i == 0 or gen is None:  # one generator per pass: its shuffle, then its binarizations and noise
                gen = B.Generator((seed, epoch))
                perm = gen.permutation(x.shape[0])
            xb = xp.take(x, perm[i * batch_size:min(x.shape[0], (i + 1) * batch_size)], axis=0)
            if binarize == "dynamic":
                xb = bernoulli_binarize(xb, gen)
            extra = () if xl is None else (bernoulli_binarize(xl, gen) if binarize == "dynamic" else xl, yl)
            optimizer.zero_grad()
            parts = model.loss(xb, *extra, rng=gen, **({} if xl is None else {"labels_checked": True}))
            sums.append(xp.stack([B.asarray(v, dtype="float64") for v in parts.values()]))
            model.backward()
            optimizer.step()
            count += 1
            bar.update(1)
            if count == record_every or step + 1 == iterations:
                _record(history, sums, count, time.perf_counter() - start, step + 1)
                bar.set_postfix(loss=f"{history.train_loss[-1]:.2f}", refresh=False)
                sums, count, start = [], 0, time.perf_counter()
    return history


def _labeled(model, labeled):
    """(xl, yl) on the active backend, checked once (each step then skips reading the labels' range from the
    device: ``loss(..., labels_checked=True)``), or (None, None)."""
    if labeled is None:
        return None, None
    xl, yl = labeled
    xl = model._input(xl)
    return xl, losses.check_labels(B.asarray(yl), xl.shape[0], model.num_classes, "fit_iterations")


def _record(history, sums, count, seconds, steps):
    """One History entry: the mean of the kept (total, recon, kl) over ``count`` steps, read in one transfer."""
    xp = B.get_xp()
    total, recon, kl = (float(v) for v in B.to_numpy(xp.sum(xp.stack(sums), axis=0)) / count)
    if not math.isfinite(total):
        raise FloatingPointError(f"fit_iterations: the loss became {total} by step {steps}; try a smaller lr")
    history.epochs.append(steps)
    history.train_loss.append(total)
    history.train_recon.append(recon)
    history.train_kl.append(kl)
    history.epoch_time.append(seconds)
