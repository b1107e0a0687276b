"""The registry of model kinds: kind name -> its class, its trainer, its optimizer and its data arguments.

Everything that depends on *which* model is trained (the CLI's ``tinyvae train``, checkpoint loading) reads this one
table instead of branching on the kind:

    spec = KINDS["vae"]
    model = spec.cls(**spec.data_args(data), latent_dim=2)      # or build(model.config()) to rebuild a saved one
    optimizer = spec.optimizer(model, lr=1e-3)
    history = spec.fit(model, data, optimizer, None, epochs=5, batch_size=128, seed=0, progress=False)

Adding a kind is one entry here: import its class at the top of this file and register it below the others
(nothing in the CLI changes: ``tinyvae train --model gmvae`` and checkpoint loading read this table), e.g.

    register(Kind(GMVAE, MLP + OBJECTIVE, data_args=labelled_input))

``options`` are the constructor keywords a user may set from ``tinyvae train``: each is an ``Option`` of ``OPTIONS``
(its flag, default and help); a kind with a keyword of its own brings it as ``Kind(..., new_options=(Option(...),))``
and the flag appears in ``tinyvae train --help``;
``data_args(data)`` the keywords computed from the data set; ``fit`` and ``training`` the training loop and the
loop options it takes (``kl_warmup``, ``clip`` for ``train.fit``); ``optimizer(model, lr)`` and ``history`` what a
checkpoint of the kind holds, so that ``--resume`` rebuilds them; ``note`` a line printed under its test figures.
"""
from dataclasses import dataclass

from . import backend as B
from . import gan, train
from .conv_models import ConvAutoencoder, ConvVAE
from .errors import InputError
from .gmvae import GMVAE
from .models import VAE, Autoencoder, ConditionalVAE, DenoisingAutoencoder
from .optim import Adam
from .ssvae import SSVAE, fit_iterations


def flat_input(data):
    """The constructor keywords of an MLP model: the width of a flattened image."""
    return {"input_dim": int(data.x_train.shape[1])}


def image_input(data):
    """The constructor keywords of a convolutional model: one channel of the data set's (height, width)."""
    return {"image_shape": (1, *data.image_shape)}


def labelled_input(data):
    """A conditional model's keywords: the image width and the number of classes (the largest label + 1)."""
    return {**flat_input(data), "num_classes": int(max(data.y_train.max(), data.y_test.max())) + 1}


def adam(model, lr):
    """One Adam over every parameter of the model."""
    return Adam(model.parameters(), lr=lr)


def fit_with_train(model, data, optimizer, history, *, epochs, batch_size, seed, progress, kl_warmup=0, clip=None,
                   binarize="none"):
    """``train.fit`` on ``data``'s training split, validated on its test split (labels passed to a model that
    needs them); ``binarize="dynamic"``: each batch a new Bernoulli draw (``cli.common.load_data`` binarized the test split)."""
    return train.fit(model, data.x_train, epochs, batch_size=batch_size, optimizer=optimizer, x_val=data.x_test,
                     seed=seed, progress=progress, kl_warmup=kl_warmup, clip=clip, history=history,
                     y_train=data.y_train, y_val=data.y_test, binarize=binarize == "dynamic")


def fit_with_gan(model, data, optimizer, history, *, epochs, batch_size, seed, progress):
    """The VAE-GAN's own loop ``gan.fit`` (``optimizer`` is its ``optim.PerNetwork``, one Adam per network)."""
    return gan.fit(model, data.x_train, epochs, batch_size=batch_size, optimizers=optimizer, seed=seed,
                   progress=progress, history=history)


@dataclass(frozen=True)
class Option:
    """A model option of ``tinyvae train``: its flag, the constructor keyword it sets, its default (None: the
    model's own), what it reads ("int": an int >= 1, "ints": 400,200, "float", or a tuple of choices), its help,
    and what a model without it lacks (said when the option is refused: "--model ae has no KL term")."""

    flag: str
    keyword: str
    default: object
    reads: object
    help: str
    what: str


OPTIONS = {o.keyword: o for o in (
    Option("--latent", "latent_dim", 20, "int", "latent dimensions (2 adds the manifold figure)", "latent size"),
    Option("--hidden", "hidden", [400], "ints", "hidden layer sizes, e.g. 400 or 512,256", "hidden layers"),
    Option("--channels", "channels", [32, 64], "ints", "channels of the stride-2 convolutions, e.g. 32,64",
           "convolutions"),
    Option("--beta", "beta", None, "float", "weight of the KL term (1 for vae, 4 for cvae)", "KL term"),
    Option("--likelihood", "likelihood", "bernoulli", ("bernoulli", "gaussian"),
           "decoder likelihood: Bernoulli (BCE, nats) or Gaussian N(x; mean, I/2)", "choice of likelihood"),
    Option("--activation", "activation", "relu", ("relu", "leaky_relu", "tanh", "sigmoid", "softplus", "elu"),
           "hidden activation", "choice of activation"),
    Option("--noise", "noise", "gaussian", ("gaussian", "masking"), "the corruption of a denoising autoencoder",
           "input corruption"),
    Option("--noise-level", "noise_level", 0.5, "float", "noise std or masking probability", "input corruption"),
    Option("--disc-hidden", "disc_hidden", None, "ints", "the discriminator's hidden layer sizes, e.g. 512,256",
           "discriminator"),
    Option("--gamma", "gamma", None, "float",
           "weight of the decoder's reconstruction term against its GAN term, e.g. 0.03", "GAN term"),
    Option("--pixel-weight", "pixel_weight", None, "float",
           "weight of the pixel BCE in the reconstruction term, 0 for Larsen's discriminator features alone",
           "discriminator"),
    Option("--train-k", "k", 1, "int", "importance samples per image in the TRAINING objective: k > 1 trains on the "
           "IWAE bound, 1 is the plain ELBO (the test bound's own k is tinyvae evaluate --k)",
           "importance-weighted objective"),
)}
MLP = ("latent_dim", "hidden", "likelihood", "activation")
CONV = ("latent_dim", "channels", "likelihood", "activation")
OBJECTIVE = ("beta", "k")  # the VAE's KL weight and importance samples of its training objective


@dataclass(frozen=True)
class Kind:
    """How to build, train and resume one kind of model (see the module docstring)."""

    cls: type
    options: tuple
    data_args: object = flat_input
    fit: object = fit_with_train
    training: tuple = ("kl_warmup", "clip", "binarize")
    binarize: str = "none"  # how the kind trains when --binarize is not given (``cli.common.load_data``)
    optimizer: object = adam
    history: type = train.History
    note: str = ""  # a line printed under the model's test figures, where they need one
    new_options: tuple = ()  # Options of keywords no other kind takes, added to OPTIONS by register

    @property
    def name(self):
        return self.cls.kind


KINDS = {}   # kind name -> Kind
MODELS = {}  # kind name -> class (the same table, for code that needs only the classes)


def register(kind):
    """Add ``kind`` (a ``Kind``) under ``kind.cls.kind``; returns it. A name registered twice is an error."""
    if kind.name in KINDS:
        raise ValueError(f"model kind {kind.name!r} is registered already (by {KINDS[kind.name].cls.__name__})")
    new = {o.keyword: o for o in kind.new_options}
    unknown = sorted(set(kind.options) - set(OPTIONS) - set(new))
    if unknown:
        raise ValueError(f"model kind {kind.name!r} takes {unknown}, which no Option describes: pass "
                         "new_options=(Option(...),)")
    OPTIONS.update(new)
    KINDS[kind.name] = kind
    MODELS[kind.name] = kind.cls
    return kind


register(Kind(Autoencoder, MLP))
register(Kind(DenoisingAutoencoder, MLP + ("noise", "noise_level")))
register(Kind(VAE, MLP + OBJECTIVE))
register(Kind(ConditionalVAE, MLP + OBJECTIVE, data_args=labelled_input))
register(Kind(ConvVAE, CONV + OBJECTIVE, data_args=image_input))
register(Kind(ConvAutoencoder, CONV, data_args=image_input))
register(Kind(gan.VAEGAN, ("latent_dim", "hidden", "activation", "beta", "disc_hidden", "gamma", "pixel_weight"),
              fit=fit_with_gan, training=(), optimizer=gan.make_optimizers, history=gan.VAEGANHistory,
              note="The VAE-GAN trains on discriminator features and a GAN loss (+ pixel_weight x the pixel BCE), "
                   "not on this ELBO: the test figures score its encoder and decoder as a VAE; `tinyvae score` "
                   "measures its samples."))


# ---- CS236 homework 2: the mixture-prior VAE and the semi-supervised M2 ----
def fit_ssvae(model, data, optimizer, history, *, epochs, batch_size, seed, progress, binarize="dynamic"):
    """M2 on every training image with the labels of the first 10 images of each digit (``datasets.
    per_class_subset``; ``tinyvae reproduce cs236`` uses the homework's hand-picked ones), every image binarized
    afresh at every step (``binarize`` "dynamic", its default; "static" and "none" train on the images as
    ``cli.common.load_data`` left them): ``ssvae.fit_iterations`` for ``epochs`` passes."""
    from .datasets import per_class_subset

    labeled = per_class_subset(data.y_train, 10, model.num_classes)
    steps = epochs * -(-data.x_train.shape[0] // batch_size)
    return fit_iterations(model, data.x_train, steps, batch_size=batch_size, seed=seed,
                          binarize="dynamic" if binarize == "dynamic" else "none", progress=progress,
                          optimizer=optimizer, history=history, labeled=(data.x_train[labeled], data.y_train[labeled]))


register(Kind(GMVAE, MLP + ("beta", "components"), new_options=(
    Option("--components", "components", None, "int", "Gaussian components of a GMVAE's mixture prior, e.g. 500",
           "mixture prior"),)))
register(Kind(SSVAE, ("latent_dim", "hidden", "activation", "gen_weight", "class_weight"), data_args=labelled_input,
              fit=fit_ssvae, training=("binarize",), binarize="dynamic",
              note="M2's test loss is its bound on -log p(x), the label summed out; it trains on gen_weight x that "
                   "bound + class_weight x the labeled cross-entropy, on binarized images (a new draw per batch) "
                   "unless --binarize says otherwise.",
              new_options=(Option("--gen-weight", "gen_weight", None, "float",
                                  "weight of an SSVAE's generative term, 0 for the classifier alone (default 1)",
                                  "generative term"),
                           Option("--class-weight", "class_weight", None, "float",
                                  "weight of an SSVAE's labeled cross-entropy (default 100)", "labeled term"))))




def build(config):
    """A new model from ``model.config()`` (the "model" key picks the kind)."""
    config = dict(config)
    kind = config.pop("model", None)
    if kind not in KINDS:
        raise InputError(f"unknown model {kind!r}: expected one of {', '.join(KINDS)}")
    return KINDS[kind].cls(**config)
