"""GeoDA (Rahmati et al. 2020): decision-based, geometric boundary normal estimation in a DCT subspace, via ART.

Two ART 1.20 problems are worked around here: its DCT basis builder calls `np.mat`, removed in
NumPy 2 (AttributeError), and it caches the basis as `2d_dct_basis_<sub_dim>_<size>.npy` in the
current directory.  We build the same basis (vectorised, as an ndarray) and run ART in a
temporary directory.
"""

from __future__ import annotations

import contextlib
import math
import tempfile

import numpy as np

from host.attacks.base import BUDGET, SEED, Attack, Param, at_least_one, in_range, positive, register
from host.attacks.common import art_evasion
from host.attacks.oracle import QueryOracle
from host.core.errors import UserError


@register
class GeoDA(Attack):
    name = "geoda"
    threat_model = "black-box"
    norm = "2"
    bounded = False
    needs = "oracle"
    description = "geometric decision-based attack, minimal L2 (ART GeoDA)"
    art_class = "GeoDA"
    params_spec = (
        BUDGET,
        Param("max_iter", int, 4000, "query budget per input (ART max_iter; >= 500)", at_least_one),
        Param("sub_dim", int, 75, "DCT subspace side (study: 75)", at_least_one),
        Param("tol", float, 1e-4, "binary-search tolerance (study: 1e-4)", positive),
        Param("lambda_param", float, 0.6, "query distribution over iterations, in (0, 1]", in_range(0, 1, True)),
        Param("sigma", float, 2e-4, "noise scale of boundary samples", positive),
        SEED,
        Param("batch_size", int, 64, "oracle batch size", at_least_one),
    )

    def _check_params(self) -> None:
        # ART splits the budget over iterations with >= 50 queries in the first; small budgets
        # make that search run out of iterations (IndexError inside ART).
        if self.params["max_iter"] < 500:
            raise UserError(f"attack 'geoda': max_iter={self.params['max_iter']} is too small (>= 500)")

    def _check_inputs(self, target: QueryOracle, x: np.ndarray) -> None:
        if x.ndim != 4 or x.shape[1] != x.shape[2]:
            raise UserError(f"attack 'geoda' needs square NHWC images, got inputs of shape {x.shape[1:]}")

    def _generate(self, model: QueryOracle, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        p = self.params
        base = art_evasion("GeoDA")

        class PatchedGeoDA(base):  # type: ignore[misc, valid-type]
            _generate_2d_dct_basis = staticmethod(dct_basis)

        attack = PatchedGeoDA(
            model.art_classifier(), batch_size=p["batch_size"], norm=2, sub_dim=p["sub_dim"],
            max_iter=p["max_iter"], bin_search_tol=p["tol"], lambda_param=p["lambda_param"],
            sigma=p["sigma"], verbose=False,
        )
        with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
            return attack.generate(x, y=y)


def dct_basis(sub_dim: int, res: int) -> np.ndarray:
    """ART GeoDA's 2-D DCT basis, (res·res, sub_dim²): column u·sub_dim+v is frequency (u, v)."""
    num = max(res, sub_dim)
    freq = np.arange(sub_dim)
    alpha = np.where(freq == 0, math.sqrt(1.0 / num), math.sqrt(2.0 / num))
    pos = np.arange(res)
    cos = alpha[:, None] * np.cos((2 * pos[None, :] + 1) * freq[:, None] * math.pi / (2 * num))  # (freq, pos)
    # basis[u, v, y, x] = cos[u, x] · cos[v, y]
    basis = np.einsum("ux,vy->uvyx", cos, cos)
    return basis.reshape(sub_dim * sub_dim, res * res).T.copy()
