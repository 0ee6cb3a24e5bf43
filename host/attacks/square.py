"""Square attack (Andriushchenko et al., ECCV 2020): score-based random search with square updates.

Ours, written from the paper (not ART: its L2 update divides where it should multiply and
returns NaN), for L∞ and L2, batched over inputs.  Each iteration proposes one random update
per input still robust, sends all proposals to the QueryOracle in one call (one query per
input) and keeps a proposal iff it lowers the margin loss  score_y - max_{k≠y} score_k  on the
oracle's scores (probabilities for the quantized models); proposals that tie it are kept too
(ACCEPT_TIES, below).  An input is fooled, and no longer queried, once the oracle's top class
is not y.

* L∞ (paper, Alg. 1-2): start from vertical stripes of ±ε; an update sets a random h×h
  window of every channel to x ± ε (one random sign per channel).
* L2 (paper, Sec. 3.2, Alg. 3): start from a grid of ±"pyramid" tiles rescaled to norm ε; an
  update moves the perturbation of a second random window W2 into a window W1 (plus any
  unused budget) and adds to W1 a pattern of two pyramids of opposite signs, so the
  perturbation keeps L2 norm ε (before clipping to the input range).

The side h shrinks with the fraction p of pixels changed, halved at the paper's iterations
10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of a 10,000-query run (rescaled to max_iter).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from host.attacks.base import SEED, Attack, Param, at_least_one, in_range, positive, register
from host.attacks.oracle import QueryOracle

QUERY_BATCH = Param("batch_size", int, 128, "inputs attacked together (queries are per input)", at_least_one)

# Iterations (of a 10,000-iteration run) after which p is halved (paper, Sec. 4).
P_HALVING_AT = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
PAPER_BUDGET = 10_000
# Proposals identical to the current point cannot lower the loss; redraw them (no query) this often.
NO_OP_REDRAWS = 10
TINY = 1e-12
# Keep proposals that tie the best loss, not only those that beat it (the paper: strictly lower).
# A quantized oracle's scores are flat over large regions (int8 softmax saturates at 255/256),
# so a strict search freezes there; accepting ties lets it drift across the plateau.  Measured
# (int8 reference): digits L∞ ε=0.1, 200 it: 38 -> 45 of 100 fooled; CIFAR L2 ε=1, 300 it: 12 -> 14 of 20.
ACCEPT_TIES = True

Box = tuple[float, float]
Init = Callable[[np.ndarray, float, Box, np.random.Generator], np.ndarray]
Update = Callable[[np.ndarray, np.ndarray, float, int, Box, np.random.Generator], np.ndarray]


# ---------------------------------------------------------------- schedule and loss


def p_at(iteration: int, max_iter: int, p_init: float) -> float:
    """Fraction of pixels a square covers at `iteration` (0-based) of a max_iter run."""
    scaled = iteration * PAPER_BUDGET // max(max_iter, 1)
    return p_init / 2 ** sum(scaled > at for at in P_HALVING_AT)


def square_side(p: float, height: int, width: int, minimum: int = 1) -> int:
    """Side h of a square covering about a fraction p of the image's pixels."""
    side = int(round(np.sqrt(p * height * width)))
    return int(np.clip(side, minimum, min(height, width)))


def margin_loss(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """score_y - max_{k≠y} score_k per row: negative once another class wins."""
    rows = np.arange(len(y))
    others = scores.copy()
    others[rows, y] = -np.inf
    return scores[rows, y] - others.max(axis=1)


# ---------------------------------------------------------------- window geometry


def window_masks(n: int, height: int, width: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """(n, H, W) boolean masks of one uniformly placed side×side window per input."""
    top = rng.integers(0, height - side + 1, size=n)
    left = rng.integers(0, width - side + 1, size=n)
    rows = (np.arange(height) >= top[:, None]) & (np.arange(height) < top[:, None] + side)
    cols = (np.arange(width) >= left[:, None]) & (np.arange(width) < left[:, None] + side)
    return rows[:, :, None] & cols[:, None, :]


def pyramid(h1: int, h2: int) -> np.ndarray:
    """The paper's h1×h2 pattern η: η(r, s) = Σ_{k=0}^{M(r,s)} 1/(n+1-k)², n = ⌊h1/2⌋,
    M(r, s) = n - max(|r - ⌊h1/2⌋|, |s - ⌊h2/2⌋|): largest at the centre, small at the rim."""
    n = h1 // 2
    r = np.abs(np.arange(h1) - h1 // 2)[:, None]
    s = np.abs(np.arange(h2) - h2 // 2)[None, :]
    levels = n - np.maximum(r, s)  # M(r, s), >= 0 inside the window
    terms = 1.0 / (n + 1 - np.arange(n + 1)) ** 2  # k = 0..n
    cumulative = np.concatenate([[0.0], np.cumsum(terms)])
    return cumulative[np.clip(levels, -1, n) + 1]


def two_pyramids(side: int) -> np.ndarray:
    """The L2 update's side×side pattern: a pyramid and a negated one side by side, unit norm."""
    half = side // 2
    pattern = np.concatenate([pyramid(side, half), -pyramid(side, side - half)], axis=1)
    return pattern / max(float(np.sqrt((pattern**2).sum())), TINY)


def place(patterns: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(n, H, W) arrays holding each input's side×side pattern inside its window mask."""
    out = np.zeros(masks.shape, np.float64)
    out[masks] = patterns.reshape(-1)  # a window's pixels come row-major, like the pattern's
    return out


# ---------------------------------------------------------------- L∞ (paper, Alg. 1-2)


def linf_init(x: np.ndarray, eps: float, box: Box, rng: np.random.Generator) -> np.ndarray:
    """Vertical stripes: every column of every channel gets x ± ε."""
    n, _, width, channels = x.shape
    signs = rng.choice([-1.0, 1.0], size=(n, 1, width, channels))
    return np.clip(x + eps * signs, *box)


def linf_update(
    x: np.ndarray, best: np.ndarray, eps: float, side: int, box: Box, rng: np.random.Generator
) -> np.ndarray:
    """Set one random window per input, each channel to x + ε or x - ε (random sign)."""
    n, height, width, channels = x.shape
    masks = window_masks(n, height, width, side, rng)[..., None]
    signs = rng.choice([-1.0, 1.0], size=(n, 1, 1, channels))
    return np.where(masks, np.clip(x + eps * signs, *box), best)


# ---------------------------------------------------------------- L2 (paper, Sec. 3.2, Alg. 3)


def l2_init(x: np.ndarray, eps: float, box: Box, rng: np.random.Generator) -> np.ndarray:
    """A grid of pyramid tiles (side ⌊min(H, W)/5⌋, ≥ 1) with random signs, rescaled to norm ε."""
    n, height, width, channels = x.shape
    tile = max(1, min(height, width) // 5)
    rows, cols = height // tile, width // tile
    signs = rng.choice([-1.0, 1.0], size=(n, rows, 1, cols, 1, channels))
    grid = (signs * pyramid(tile, tile)[None, None, :, None, :, None]).reshape(n, rows * tile, cols * tile, channels)
    delta = np.zeros(x.shape, np.float64)
    delta[:, : rows * tile, : cols * tile] = grid
    return np.clip(x + rescale(delta, eps), *box)


def rescale(delta: np.ndarray, norm: float) -> np.ndarray:
    """delta scaled to L2 norm `norm` per input (zero stays zero)."""
    size = np.sqrt((delta**2).reshape(len(delta), -1).sum(axis=1))
    return delta * (norm / np.maximum(size, TINY)).reshape(-1, 1, 1, 1)


def l2_update(
    x: np.ndarray, best: np.ndarray, eps: float, side: int, box: Box, rng: np.random.Generator
) -> np.ndarray:
    """Move the perturbation of window W2 (and the unused budget) into window W1, reshaped by
    ±(two pyramids); per channel the mass of W1 ∪ W2 plus 1/c of the unused budget is kept."""
    n, height, width, channels = x.shape
    nu = best.astype(np.float64) - x
    w1 = window_masks(n, height, width, side, rng)[..., None]
    w2 = window_masks(n, height, width, side, rng)[..., None]
    pattern = np.stack([two_pyramids(side)] * n)
    flip = rng.random(n) < 0.5  # the paper's random rotation of the pattern
    pattern[flip] = pattern[flip].transpose(0, 2, 1)
    eta = place(pattern, w1[..., 0])[..., None] * rng.choice([-1.0, 1.0], size=(n, 1, 1, channels))

    unused = np.maximum(eps**2 - (nu**2).sum(axis=(1, 2, 3)), 0.0).reshape(n, 1, 1, 1)
    in_w1 = np.where(w1, nu, 0.0)
    old_direction = in_w1 / np.maximum(channel_norm(in_w1), TINY)
    available = np.sqrt(channel_norm(np.where(w1 | w2, nu, 0.0)) ** 2 + unused / channels)
    direction = eta + old_direction
    size = channel_norm(np.where(w1, direction, 0.0))
    # The pattern can cancel the old window exactly (1-pixel windows): then the pattern alone.
    direction, size = np.where(size > 1e-9, direction, eta), np.where(size > 1e-9, size, 1.0)
    new_w1 = direction / size * available
    nu_new = np.where(w1, new_w1, np.where(w2, 0.0, nu))
    return np.clip(x + nu_new, *box)


def channel_norm(values: np.ndarray) -> np.ndarray:
    """(n, 1, 1, C) L2 norm of each input's channel."""
    return np.sqrt((values**2).sum(axis=(1, 2), keepdims=True))


# ---------------------------------------------------------------- the search


@dataclass
class SearchResult:
    x_adv: np.ndarray       # best point per input (lowest margin; a fooling one if found)
    fooled: np.ndarray      # the oracle's top class is not y
    queries: np.ndarray     # oracle queries spent per input


def square_search(
    oracle: QueryOracle, x: np.ndarray, y: np.ndarray, eps: float, max_iter: int, p_init: float,
    init: Init, update: Update, min_side: int, rng: np.random.Generator,
) -> SearchResult:
    """Random search: one clean query, one for the start, then at most max_iter - 1 updates
    per input; inputs stop being queried once fooled."""
    box = oracle.input_range
    x = x.astype(np.float64)
    _, height, width, _ = x.shape
    queries = np.zeros(len(x), np.int64)

    clean = oracle(x.astype(np.float32))
    queries += 1
    best, loss = x.copy(), margin_loss(clean, y)
    fooled = clean.argmax(axis=1) != y
    todo = np.flatnonzero(~fooled)
    if todo.size:
        best[todo] = init(x[todo], eps, box, rng)
        loss[todo], fooled[todo] = evaluate(oracle, best[todo], y[todo])
        queries[todo] += 1
    for iteration in range(1, max_iter):
        todo = np.flatnonzero(~fooled)
        if todo.size == 0:
            break
        side = square_side(p_at(iteration, max_iter, p_init), height, width, min_side)
        proposal = propose(update, x[todo], best[todo], eps, side, box, rng)
        new_loss, new_fooled = evaluate(oracle, proposal, y[todo])
        queries[todo] += 1
        better = new_loss <= loss[todo] if ACCEPT_TIES else new_loss < loss[todo]
        best[todo[better]], loss[todo[better]] = proposal[better], new_loss[better]
        fooled[todo[better]] = new_fooled[better]
    return SearchResult(best.astype(np.float32), fooled, queries)


def evaluate(oracle: QueryOracle, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Margin loss and fooled flag per input (one query each)."""
    scores = oracle(x.astype(np.float32))
    return margin_loss(scores, y), scores.argmax(axis=1) != y


def propose(
    update: Update, x: np.ndarray, best: np.ndarray, eps: float, side: int, box: Box, rng: np.random.Generator
) -> np.ndarray:
    """One update per input; proposals equal to the current point (a window already at that
    sign) are redrawn without spending a query, since they cannot lower the loss."""
    proposal = update(x, best, eps, side, box, rng)
    for _ in range(NO_OP_REDRAWS):
        same = np.flatnonzero(np.all((proposal == best).reshape(len(x), -1), axis=1))
        if same.size == 0:
            break
        proposal[same] = update(x[same], best[same], eps, side, box, rng)
    return proposal


# ---------------------------------------------------------------- registry


class _Square(Attack):
    threat_model = "black-box"
    needs = "oracle"
    art_class = "(ours, from the paper)"
    init: Init
    update: Update
    min_side = 1

    def _generate(self, model: QueryOracle, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        batch, rng = self.params["batch_size"], np.random.default_rng(self.params["seed"])
        x_adv = x.copy()
        self.queries_per_input = np.zeros(len(x), np.int64)  # for medians; the total is last_queries
        self.fooled = np.zeros(len(x), bool)
        for start in range(0, len(x), batch):
            rows = np.arange(start, min(start + batch, len(x)))
            x_adv[rows] = self._attack_chunk(model, x[rows], y[rows], rows, rng)
        return x_adv

    def _attack_chunk(
        self, model: QueryOracle, x: np.ndarray, y: np.ndarray, rows: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """The search, then restarts on the inputs still not fooled (a restart's point is kept
        only if it fools)."""
        p = self.params
        x_adv, todo = x.copy(), np.arange(len(x))
        for restart in range(p["restarts"]):
            result = square_search(
                model, x[todo], y[todo], self.eps, p["max_iter"], p["p_init"], type(self).init,
                type(self).update, self.min_side, rng,
            )
            self.queries_per_input[rows[todo]] += result.queries
            keep = result.fooled | (restart == 0)
            x_adv[todo[keep]] = result.x_adv[keep]
            self.fooled[rows[todo[result.fooled]]] = True
            todo = todo[~result.fooled]
            if todo.size == 0:
                break
        return x_adv


def _square_params(eps: float, max_iter: int, p_init: float, norm: str) -> tuple[Param, ...]:
    return (
        Param("eps", float, eps, f"L{norm} radius (study: {eps:g})", positive),
        Param("max_iter", int, max_iter,
              f"queries per input after one clean check (study: {max_iter})", at_least_one),
        Param("p_init", float, p_init, f"initial fraction of pixels changed (study: {p_init:g})",
              in_range(0, 1, lo_open=True)),
        Param("restarts", int, 1, "restarts on inputs not yet fooled", at_least_one),
        SEED, QUERY_BATCH,
    )


@register
class SquareLinf(_Square):
    name = "square-linf"
    norm = "inf"
    description = "Square attack, L∞, score-based queries (ours, Andriushchenko et al. 2020)"
    params_spec = _square_params(0.015, 1000, 0.05, "∞")
    init = staticmethod(linf_init)
    update = staticmethod(linf_update)


@register
class SquareL2(_Square):
    name = "square-l2"
    norm = "2"
    description = "Square attack, L2, score-based queries (ours, Andriushchenko et al. 2020)"
    params_spec = _square_params(1.0, 2000, 0.8, "2")
    init = staticmethod(l2_init)
    update = staticmethod(l2_update)
    min_side = 2  # both halves of the two-pyramid pattern need a column
