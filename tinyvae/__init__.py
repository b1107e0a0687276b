"""tinyvae: autoencoders and variational autoencoders from scratch, every backward pass written by hand.

    import tinyvae as tv
    tv.use("numpy")            # or "cupy" for a GPU, or "strict" to test that no code escapes the backend
    layer = tv.Dense(784, 400)
"""
from . import backend, checkpoint, conv, datasets, experiments, gan, gradcheck, iwae, kinds, losses, models, optim
from . import train
from .activations import ACTIVATIONS, ELU, Identity, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh, get_activation
from .backend import (
    BackendUnavailable,
    Generator,
    as_generator,
    asarray,
    backend_name,
    default_dtype,
    get_xp,
    seed,
    set_default_dtype,
    to_numpy,
    use,
    use_plain,
)
from .checkpoint import Checkpoint, load, save
from .conv import Conv2d, ConvTranspose2d, Flatten, Unflatten
from .conv_models import ConvAutoencoder, ConvVAE
from .errors import TinyVAEError
from .gan import VAEGAN, Discriminator
from .gmvae import GMVAE
from .layers import Dense
from .models import VAE, Autoencoder, DenoisingAutoencoder, LossParts
from .module import Module, Parameter, Sequential
from .optim import SGD, Adam, clip_grad_norm
from .pca import PCA
from .reparam import Reparameterize
from .iwae import iwae_bound
from .ssvae import SSVAE
from .train import History, active_units, evaluate, fit, latent_variances

__version__ = "0.1.0"

__all__ = [
    # the backend switch
    "use", "use_plain", "backend_name", "get_xp", "asarray", "to_numpy", "default_dtype", "set_default_dtype",
    "Generator", "as_generator", "seed", "BackendUnavailable", "TinyVAEError",
    # building blocks
    "Parameter", "Module", "Sequential", "Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softplus", "Identity",
    "ELU", "ACTIVATIONS", "get_activation", "Reparameterize",
    "Conv2d", "ConvTranspose2d", "Flatten", "Unflatten",
    # models, training, evaluation
    "Autoencoder", "DenoisingAutoencoder", "VAE", "ConvVAE", "ConvAutoencoder", "VAEGAN", "Discriminator",
    "GMVAE", "SSVAE", "LossParts", "SGD", "Adam", "clip_grad_norm", "fit", "History",
    "evaluate", "iwae_bound", "active_units", "latent_variances", "PCA", "save", "load", "Checkpoint",
    # submodules
    "backend", "checkpoint", "conv", "datasets", "experiments", "gan", "gradcheck", "iwae", "kinds", "losses", "models",
    "optim", "train",
]
