"""Semantic IDs by RQ-VAE (TIGER, Rajput et al. 2023): a small autoencoder whose latent is
quantised residually, trained so that the codes reconstruct the item vectors.

1. an MLP encoder maps each item vector (d) to a latent (``LATENT``); an MLP decoder maps back;
2. the latent is quantised level by level: the nearest code of level 1's codebook, then the
   nearest code of level 2's to what is left, ...; the quantised latent is the sum of the
   codes, passed to the decoder with the straight-through estimator (the encoder gets the
   decoder's gradient as if there were no quantisation);
3. the loss: reconstruction (mean squared error) + per level the codebook term
   ``|sg(r) - c|^2`` + ``COMMITMENT`` x the commitment term ``|r - sg(c)|^2``;
4. the codebooks start as k-means (``recoworld.items.semantic_ids``, seeded) of the residuals
   of the untrained encoder's latents, level by level, and a code that no item uses in an
   epoch restarts at a random residual of that level.

Fitted on the world's items only (``fit_rows``); every item (a creator's new ones too) gets the
trained encoder's codes, so new items never move existing codes. Deterministic on CPU: the
weights are initialised from ``generator(seed, "rq-vae")`` (in a forked torch RNG: the global
one is left as it was), batches come from that numpy generator, and the fit runs on one thread
(thread counts change the order of float sums): the same items and seed give the same codes,
run after run, whatever the machine's thread count. Colliding code
tuples are told apart as RQ-KMeans does (:func:`~recoworld.items.semantic_ids.disambiguate`).

torch is imported when a model is fitted, never at import; without it the error says how to
install it (CPU build first on CPU machines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recoworld.errors import DataError
from recoworld.items.semantic_ids import SemanticIds, disambiguate, kmeans, nearest
from recoworld.rng import generator

LATENT = 32
"""Latent dimensions (the codebooks' dimension)."""
HIDDEN = 256
"""Hidden units of the encoder's and decoder's one hidden layer."""
COMMITMENT = 0.25
"""Weight of the commitment term (the encoder kept near its codes)."""
EPOCHS = 60
BATCH = 512
LEARNING_RATE = 3e-3

INSTALL_HINT = (
    "semantic_id.method = 'rq-vae' needs torch: on a CPU machine `pip install torch==2.13.0` "
    "(the CPU build), or the rl / embeddings extra; docs/items.md"
)


@dataclass(frozen=True, eq=False)
class RQVAE:
    """A trained RQ-VAE: :meth:`codes` of any vectors, :meth:`reconstruct` them from codes."""

    model: Any  # _Net (torch.nn.Module)
    levels: int
    losses: tuple[float, ...]
    """Mean training loss per epoch."""

    def _torch(self) -> Any:
        import torch

        return torch

    def codes(self, vectors: np.ndarray) -> np.ndarray:
        """(n, levels) int32 codes of ``vectors`` (n, d)."""
        torch = self._torch()
        with _one_thread(torch), torch.no_grad():
            _, idx, _ = self.model.quantise(self.model.enc(torch.from_numpy(_f32(vectors))))
        return idx.numpy().astype(np.int32)

    def reconstruct(self, vectors: np.ndarray) -> np.ndarray:
        """The decoder's output from the codes of ``vectors``: what the codes keep of them."""
        torch = self._torch()
        with _one_thread(torch), torch.no_grad():
            zq, _, _ = self.model.quantise(self.model.enc(torch.from_numpy(_f32(vectors))))
            return self.model.dec(zq).numpy()

    def codebooks(self) -> tuple[np.ndarray, ...]:
        return tuple(b.detach().numpy().copy() for b in self.model.books)


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


class _one_thread:
    """torch on one thread for a block (float sums in one order, whatever the thread count)."""

    def __init__(self, torch: Any) -> None:
        self.torch, self.before = torch, 1

    def __enter__(self) -> None:
        self.before = self.torch.get_num_threads()
        self.torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        self.torch.set_num_threads(self.before)


def _net(torch: Any, d: int, levels: int, k: int) -> Any:
    nn = torch.nn

    class _Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Sequential(nn.Linear(d, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, LATENT))
            self.dec = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, d))
            self.books = nn.ParameterList(
                [nn.Parameter(torch.zeros(k, LATENT)) for _ in range(levels)]
            )

        def quantise(self, z: Any) -> tuple[Any, Any, Any]:
            """(straight-through quantised latent, (n, levels) codes, codebook + commitment
            loss)."""
            r, q = z, torch.zeros_like(z)
            codes, loss = [], z.new_zeros(())
            for book in self.books:
                idx = torch.cdist(r.detach(), book.detach()).argmin(dim=1)
                c = book[idx]
                codebook = ((r.detach() - c) ** 2).mean()
                loss = loss + codebook + COMMITMENT * ((r - c.detach()) ** 2).mean()
                q = q + c
                r = r - c.detach()
                codes.append(idx)
            return z + (q - z).detach(), torch.stack(codes, dim=1), loss

    return _Net()


def fit_rq_vae(
    vectors: np.ndarray,
    *,
    levels: int = 3,
    codebook_size: int = 32,
    seed: int = 0,
    epochs: int = EPOCHS,
) -> RQVAE:
    """Train an RQ-VAE on ``vectors`` (n, d); see the module's steps."""
    try:
        import torch
    except ImportError as e:
        raise DataError(
            "semantic IDs", f"cannot import torch ({e})", expected=INSTALL_HINT
        ) from None
    x = _f32(vectors)
    n, d = x.shape
    rng = generator(seed, "rq-vae")
    with _one_thread(torch):
        with torch.random.fork_rng(devices=[]):  # seeded init; torch's global RNG untouched
            torch.manual_seed(int(rng.integers(2**62)))
            net = _net(torch, d, levels, codebook_size)
        xt = torch.from_numpy(x)
        # 4. codebooks from k-means of the untrained encoder's residuals, level by level
        with torch.no_grad():
            r = net.enc(xt).numpy()
            for level, book in enumerate(net.books):
                c = kmeans(r, codebook_size, 10, generator(seed, "rq-vae", "init", level))
                book[: c.shape[0]] = torch.from_numpy(c)
                if c.shape[0] < codebook_size:  # fewer distinct residuals than codes: repeat
                    extra = np.resize(c, (codebook_size - c.shape[0], c.shape[1]))
                    book[c.shape[0] :] = torch.from_numpy(extra)
                r = r - c[nearest(r, c)]
        opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        losses = []
        for _ in range(epochs):
            order = rng.permutation(n)
            used = torch.zeros(levels, codebook_size, dtype=torch.bool)
            total = 0.0
            for s in range(0, n, BATCH):
                xb = xt[torch.from_numpy(order[s : s + BATCH])]
                zq, idx, rq_loss = net.quantise(net.enc(xb))
                loss = ((net.dec(zq) - xb) ** 2).mean() + rq_loss
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * xb.shape[0]
                for level in range(levels):
                    used[level, idx[:, level]] = True
            losses.append(total / n)
            _restart_dead_codes(torch, net, xt, used, rng)
    return RQVAE(model=net, levels=levels, losses=tuple(losses))


def _restart_dead_codes(torch: Any, net: Any, xt: Any, used: Any, rng: np.random.Generator) -> None:
    """Codes no item used this epoch restart at random residuals of their level."""
    if bool(used.all()):
        return
    with torch.no_grad():
        r = net.enc(xt)
        for level, book in enumerate(net.books):
            dead = (~used[level]).nonzero().flatten()
            if dead.numel():
                pick = torch.from_numpy(rng.choice(r.shape[0], size=int(dead.numel())))
                book[dead] = r[pick]
            idx = torch.cdist(r, book).argmin(dim=1)
            r = r - book[idx]


def build_semantic_ids_vae(
    vectors: np.ndarray,
    *,
    fit_rows: np.ndarray | None = None,
    levels: int = 3,
    codebook_size: int = 32,
    seed: int = 0,
    epochs: int = EPOCHS,
) -> SemanticIds:
    """RQ-VAE codes of every row of ``vectors``, the model trained on ``fit_rows`` (default
    every row); collisions told apart as for RQ-KMeans."""
    x = _f32(vectors)
    fit = np.arange(x.shape[0]) if fit_rows is None else np.asarray(fit_rows)
    vae = fit_rq_vae(x[fit], levels=levels, codebook_size=codebook_size, seed=seed, epochs=epochs)
    codes, collisions = disambiguate(vae.codes(x))
    return SemanticIds(codes=codes, codebooks=vae.codebooks(), collisions=collisions)
