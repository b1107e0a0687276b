"""ConvVAE and ConvAutoencoder: the VAE and the autoencoder with convolutional encoders and decoders.

For 28x28 digits and channels=(32, 64), kernel 4, stride 2, padding 1 (the defaults):

    encoder   (N, 784) -> (N, 1, 28, 28) -> Conv2d 32 -> (N, 32, 14, 14) -> Conv2d 64 -> (N, 64, 7, 7) -> (N, 3136)
    heads     Dense 3136 -> K for mu and for logvar (the VAE), or one Dense 3136 -> K for the code z (the autoencoder)
    decoder   Dense K -> 3136 -> (N, 64, 7, 7) -> ConvTranspose2d 32 -> (N, 32, 14, 14) -> ConvTranspose2d 1
              -> (N, 1, 28, 28) -> (N, 784) logits

with the activation after every layer but the heads and the last. Inputs and outputs stay flat (N, C*H*W) batches,
so everything written for the MLP models (fit, evaluate, the plots, sample, reconstruct, interpolate, checkpoints)
works unchanged: the models differ only in what ``encoder`` and ``decoder`` hold. The objective and its backward
pass are the MLP models' own (ConvVAE is a VAE, ConvAutoencoder an Autoencoder).
"""
import math

from . import backend as B
from .activations import get_activation
from .checks import positive_int
from .conv import Conv2d, ConvTranspose2d, Flatten, Unflatten, conv_output_size
from .errors import InputError
from .layers import Dense
from .models import VAE, Autoencoder, check_sizes
from .module import Sequential


def _conv_config(image_shape, channels, kernel_size, latent_dim, likelihood):
    """(image_shape, channels) as lists, or a clear error for a bad size, channel count or likelihood."""
    image_shape = tuple(image_shape)
    if len(image_shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1
                                        for d in image_shape):
        raise InputError(f"image_shape must be (channels, height, width) as positive ints, got {image_shape!r}")
    positive_int(kernel_size, "kernel_size")
    channels = list(check_sizes(math.prod(image_shape), channels, latent_dim, likelihood))
    if not channels:
        raise InputError("channels must name at least one convolution, e.g. (32, 64)")
    return list(image_shape), channels


def conv_stacks(image_shape, channels, kernel_size, activation, dtype, rng):
    """The convolutional encoder (N, C*H*W) -> (N, flat) and decoder trunk (N, flat) -> (N, C*H*W) logits, and flat.

    Each convolution halves the image (stride 2, padding (k - 1) // 2); each transposed convolution doubles it back,
    with the output_padding that restores odd sizes exactly.
    """
    c, h, w = image_shape
    padding = (kernel_size - 1) // 2
    sizes = [(h, w)]
    encoder, widths = [Unflatten(c, h, w)], [c, *channels]
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        hh, ww = (conv_output_size(s, kernel_size, 2, padding) for s in sizes[-1])
        if hh < 1 or ww < 1:
            raise InputError(f"image_shape {tuple(image_shape)} is too small for {len(channels)} stride-2 "
                             f"convolutions with kernel {kernel_size}")
        sizes.append((hh, ww))
        encoder += [Conv2d(c_in, c_out, kernel_size, 2, padding, rng=rng, dtype=dtype), get_activation(activation)]
    encoder.append(Flatten())
    encoder[1].input_grad = False  # nothing needs the gradient w.r.t. the pixels
    flat = channels[-1] * sizes[-1][0] * sizes[-1][1]
    decoder = [Unflatten(channels[-1], *sizes[-1])]
    for i in range(len(channels), 0, -1):
        (hh, ww), (h_out, w_out) = sizes[i], sizes[i - 1]
        extra = [out - ((size - 1) * 2 - 2 * padding + kernel_size) for out, size in ((h_out, hh), (w_out, ww))]
        if not all(0 <= e < 2 for e in extra):
            raise InputError(f"image_shape {tuple(image_shape)}: kernel {kernel_size} cannot map {hh}x{ww} back to "
                             f"{h_out}x{w_out} with a stride-2 transposed convolution")
        decoder.append(ConvTranspose2d(widths[i], widths[i - 1], kernel_size, 2, padding,
                                       output_padding=extra[0] if extra[0] == extra[1] else tuple(extra),
                                       rng=rng, dtype=dtype))
        if i > 1:
            decoder.append(get_activation(activation))
    decoder.append(Flatten())
    return Sequential(*encoder), decoder, flat


def _inherited(keys):
    """A model's config keys without the MLP's sizes: the objective's options, whatever the MLP model has."""
    return tuple(k for k in keys if k not in ("input_dim", "hidden"))


class ConvVAE(VAE):
    """A VAE whose encoder and decoder are convolutional (see the module docstring for the layers).

    Objective and backward: exactly VAE's (recon + beta * KL, z = mu + exp(logvar / 2) * eps); only the layers the
    gradients flow through differ. Options of the objective that VAE takes (``beta``, ...) pass through
    ``**objective``.
    """

    kind = "convvae"
    decode_rows = 1000  # rows per decoder pass in iwae_bound: ~200 MB of intermediate images at the defaults
    _config_keys = ("image_shape", "channels", "kernel_size", *_inherited(VAE._config_keys))

    def __init__(self, image_shape=(1, 28, 28), channels=(32, 64), latent_dim=20, likelihood="bernoulli",
                 activation="relu", kernel_size=4, dtype=None, rng=None, **objective):
        image_shape, channels = _conv_config(image_shape, channels, kernel_size, latent_dim, likelihood)
        # VAE.__init__ sets and checks the objective's settings; its MLP layers are then replaced (they are built
        # from a throwaway generator, so ``rng`` draws only the layers kept).
        super().__init__(input_dim=math.prod(image_shape), hidden=(), latent_dim=latent_dim, likelihood=likelihood,
                         activation=activation, dtype=dtype, rng=B.Generator(0), **objective)
        self.image_shape, self.channels, self.kernel_size = image_shape, channels, kernel_size
        rng = B.as_generator(rng)
        self.encoder, trunk, flat = conv_stacks(image_shape, channels, kernel_size, activation, dtype, rng)
        self.mu_head = Dense(flat, latent_dim, rng=rng, dtype=dtype)
        self.logvar_head = Dense(flat, latent_dim, rng=rng, dtype=dtype)
        self.decoder = Sequential(Dense(latent_dim, flat, rng=rng, dtype=dtype), get_activation(activation), *trunk)


class ConvAutoencoder(Autoencoder):
    """An autoencoder with the ConvVAE's layers and one Dense head for the code z; the objective is Autoencoder's."""

    kind = "convae"
    _config_keys = ("image_shape", "channels", "kernel_size", *_inherited(Autoencoder._config_keys))

    def __init__(self, image_shape=(1, 28, 28), channels=(32, 64), latent_dim=20, likelihood="bernoulli",
                 activation="relu", kernel_size=4, dtype=None, rng=None):
        image_shape, channels = _conv_config(image_shape, channels, kernel_size, latent_dim, likelihood)
        super().__init__(input_dim=math.prod(image_shape), hidden=(), latent_dim=latent_dim, likelihood=likelihood,
                         activation=activation, dtype=dtype, rng=B.Generator(0))
        self.image_shape, self.channels, self.kernel_size = image_shape, channels, kernel_size
        rng = B.as_generator(rng)
        encoder, trunk, flat = conv_stacks(image_shape, channels, kernel_size, activation, dtype, rng)
        self.encoder = Sequential(*encoder, Dense(flat, latent_dim, rng=rng, dtype=dtype))
        self.decoder = Sequential(Dense(latent_dim, flat, rng=rng, dtype=dtype), get_activation(activation), *trunk)
