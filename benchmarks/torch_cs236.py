"""CS236 homework 2's four models written in PyTorch, the same networks that ``tinyvae reproduce cs236`` trains, for
the PyTorch column of bench_cs236.py (torch is an optional dependency: pip install -e ".[bench]").

Each model mirrors its tinyvae class layer for layer (``parameter_count`` is the same; a test checks it):
784-300-300 ELU encoder with mu and logvar heads, 300-300-784 ELU decoder with Bernoulli logits; the GMVAE's prior is
K components with means and pre-variances rho (v = softplus(rho) + 1e-8), its KL the one-sample log q(z|x) - log p(z);
M2 enumerates the C labels of every unlabeled image as the homework does. Autograd makes every gradient here.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)


def elu_mlp(sizes, last_activation=False):
    """Linear layers of the given sizes with ELU between them (and after the last with ``last_activation``)."""
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ELU()]
    return nn.Sequential(*(layers if last_activation else layers[:-1]))


def gaussian_kl(mu, logvar):
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, in closed form."""
    return 0.5 * torch.sum(mu * mu + logvar.exp() - 1.0 - logvar, dim=1)


def log_normal(z, mu, var):
    """log N(z; mu, diag(var)) summed over the last axis (broadcasting)."""
    return -0.5 * torch.sum((z - mu) ** 2 / var + torch.log(var) + LOG_2PI, dim=-1)


class GaussianCoder(nn.Module):
    """The encoder q(z|x) (mu and logvar heads) and the Bernoulli decoder shared by the VAE, the GMVAE and M2."""

    def __init__(self, input_dim, hidden, latent, label_dim=0):
        super().__init__()
        self.encoder = elu_mlp([input_dim + label_dim, *hidden], last_activation=True)
        self.mu, self.logvar = nn.Linear(hidden[-1], latent), nn.Linear(hidden[-1], latent)
        self.decoder = elu_mlp([latent + label_dim, *reversed(hidden), input_dim])

    def encode_sample(self, inputs):
        """(mu, logvar, z) for the encoder's inputs, one z = mu + exp(logvar / 2) * eps each, eps ~ N(0, I)."""
        h = self.encoder(inputs)
        mu, logvar = self.mu(h), self.logvar(h)
        return mu, logvar, mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    @staticmethod
    def recon(logits, x):
        """-log p(x|z) for Bernoulli logits, per row."""
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)


class VAE(GaussianCoder):
    def __init__(self, input_dim=784, hidden=(300, 300), latent=10):
        super().__init__(input_dim, hidden, latent)

    def loss(self, x):
        """The batch mean of recon + KL(q(z|x) || N(0, I)) (closed form)."""
        mu, logvar, z = self.encode_sample(x)
        return torch.mean(self.recon(self.decoder(z), x) + gaussian_kl(mu, logvar))


class GMVAE(GaussianCoder):
    def __init__(self, input_dim=784, hidden=(300, 300), latent=10, components=500):
        super().__init__(input_dim, hidden, latent)
        scale = 1.0 / math.sqrt(components * latent)  # the homework's initialisation
        self.prior_means = nn.Parameter(torch.randn(components, latent) * scale)
        self.prior_rho = nn.Parameter(torch.randn(components, latent) * scale)

    def log_prior(self, z):
        """log (1/K sum_k N(z; m_k, v_k)) for each row of z: a log-sum-exp over the (N, K) component densities."""
        variances = F.softplus(self.prior_rho) + 1e-8
        log_comp = log_normal(z.unsqueeze(1), self.prior_means.unsqueeze(0), variances.unsqueeze(0))
        return torch.logsumexp(log_comp, dim=1) - math.log(self.prior_means.shape[0])

    def loss(self, x):
        """The batch mean of recon + log q(z|x) - log p(z), one sample z per image."""
        mu, logvar, z = self.encode_sample(x)
        kl = log_normal(z, mu, logvar.exp()) - self.log_prior(z)
        return torch.mean(self.recon(self.decoder(z), x) + kl)


class M2(GaussianCoder):
    """The semi-supervised VAE: classifier q(y|x), encoder q(z|x, y), decoder p(x|z, y), labels enumerated."""

    def __init__(self, input_dim=784, hidden=(300, 300), latent=64, classes=10, gen_weight=1.0, class_weight=100.0):
        super().__init__(input_dim, hidden, latent, label_dim=classes)
        self.classifier = elu_mlp([input_dim, *hidden, classes])
        self.classes, self.gen_weight, self.class_weight = classes, gen_weight, class_weight

    def loss(self, x, xl, yl):
        """gen_weight * mean U(x) + class_weight * CE(q(y|xl), yl); the classifier alone when gen_weight is 0."""
        ce = F.cross_entropy(self.classifier(xl), yl)
        if self.gen_weight == 0:
            return self.class_weight * ce
        n, c = x.shape[0], self.classes
        log_pi = F.log_softmax(self.classifier(x), dim=1)
        pi = log_pi.exp()
        onehot = torch.eye(c, dtype=x.dtype, device=x.device).repeat(n, 1)  # row n * C + c holds (x_n, e_c)
        x_rep = x.repeat_interleave(c, dim=0)
        mu, logvar, z = self.encode_sample(torch.cat([x_rep, onehot], dim=1))
        rec = self.recon(self.decoder(torch.cat([z, onehot], dim=1)), x_rep).view(n, c)
        kl_z = gaussian_kl(mu, logvar).view(n, c)
        unlabeled = torch.sum(pi * (rec + kl_z), dim=1) + torch.sum(pi * log_pi, dim=1) + math.log(c)
        return self.gen_weight * unlabeled.mean() + self.class_weight * ce


def build(kind, settings):
    """(model, the parameters Adam steps) for a bench_cs236 kind, with tinyvae.reproduce's settings."""
    hidden = tuple(settings["hidden"])
    if kind == "vae":
        model = VAE(hidden=hidden, latent=settings["latent"])
    elif kind == "gmvae":
        model = GMVAE(hidden=hidden, latent=settings["latent"], components=settings["components"])
    else:
        model = M2(hidden=hidden, latent=settings["ssvae_latent"], gen_weight=1.0 if kind == "ssvae" else 0.0,
                   class_weight=settings["class_weight"])
    params = model.classifier.parameters() if kind == "classifier" else model.parameters()
    return model, list(params)


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())
