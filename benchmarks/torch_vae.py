"""The reference VAE written in PyTorch, for the benchmarks' side-by-side runs (torch is an optional dependency)."""
import math

import torch

import tinyvae as tv


class TorchVAE(torch.nn.Module):
    """784-400-20-400-784, ReLU, Bernoulli logits: the same model as tinyvae.VAE() with its defaults."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Linear(784, 400)
        self.mu, self.logvar = torch.nn.Linear(400, 20), torch.nn.Linear(400, 20)
        self.dec1, self.dec2 = torch.nn.Linear(20, 400), torch.nn.Linear(400, 784)

    def neg_elbo(self, x, eps=None):
        """Per-example negative ELBO (recon + KL), one z per example (``eps`` fixes the noise; else torch draws it)."""
        h = torch.relu(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * (torch.randn_like(mu) if eps is None else eps)
        logits = self.dec2(torch.relu(self.dec1(z)))
        recon = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = 0.5 * torch.sum(mu * mu + logvar.exp() - 1 - logvar, dim=1)
        return recon + kl

    def layer_pairs(self, model):
        """(torch Linear, tinyvae Dense) pairs of the same layer in a tinyvae VAE."""
        return [(self.enc, model.encoder[0]), (self.mu, model.mu_head), (self.logvar, model.logvar_head),
                (self.dec1, model.decoder[0]), (self.dec2, model.decoder[2])]

    def copy_from(self, model):
        """Take a tinyvae VAE's weights (torch.nn.Linear stores W transposed)."""
        with torch.no_grad():
            for linear, dense in self.layer_pairs(model):
                linear.weight.copy_(torch.from_numpy(tv.to_numpy(dense.W.data).T.copy()))
                linear.bias.copy_(torch.from_numpy(tv.to_numpy(dense.b.data).copy()))
        return self

    def copy_to(self, model):
        """Put these weights into a tinyvae VAE (to score both models with one implementation)."""
        for linear, dense in self.layer_pairs(model):
            dense.W.data[...] = tv.asarray(linear.weight.detach().cpu().numpy().T.copy())
            dense.b.data[...] = tv.asarray(linear.bias.detach().cpu().numpy().copy())
        return model


def torch_iwae_bound(twin, x, *, rows, k=1000, seed=0):
    """The IWAE bound on -log p(x) (mean nats per image) computed in plain PyTorch, the same chunking as tinyvae's:
    about ``rows`` (example, sample) rows through the decoder at once (pass ``tinyvae.iwae.iwae_chunk_rows(model)``
    for tinyvae's), torch.logsumexp over the k samples. The noise is drawn on ``x``'s device (a CUDA tensor: on the
    GPU)."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    per_chunk, total = max(1, rows // k), 0.0
    with torch.no_grad():
        for a in range(0, x.shape[0], per_chunk):
            xc = x[a:a + per_chunk]
            h = torch.relu(twin.enc(xc))
            mu, logvar = twin.mu(h), twin.logvar(h)
            eps = torch.randn((xc.shape[0], k, mu.shape[1]), generator=gen, device=x.device)
            z = mu[:, None, :] + torch.exp(0.5 * logvar)[:, None, :] * eps
            logits = twin.dec2(torch.relu(twin.dec1(z)))
            log_px = -torch.nn.functional.binary_cross_entropy_with_logits(
                logits, xc[:, None, :].expand_as(logits), reduction="none").sum(2)
            log_w = log_px + 0.5 * (eps * eps).sum(2) - 0.5 * (z * z).sum(2) + 0.5 * logvar.sum(1, keepdim=True)
            total -= float((torch.logsumexp(log_w, dim=1) - math.log(k)).sum())
    return total / x.shape[0]
