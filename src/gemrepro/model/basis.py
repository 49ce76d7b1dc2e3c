"""Radial and angular basis functions of GemNet (Gasteiger et al. 2021, Sec. 4).

Every function is written in differentiable torch so that forces F = -dE/dR flow through the
basis. Distances are in Å; the cutoff envelope makes each basis function go to zero at the
cutoff together with its first and second derivatives, so energies and forces stay continuous
when an atom crosses the cutoff sphere.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import spherical_jn

# Below this argument (per order l: x < l + 1) the upward recurrence for j_l loses accuracy by
# cancellation, so a power series is used instead; both agree to round-off at the switch.
_SERIES_TERMS = 18


class PolynomialEnvelope(torch.nn.Module):
    """u(x) = 1 + a x^p + b x^(p+1) + c x^(p+2) for x < 1, else 0 (x = d / cutoff).

    The coefficients make u, u' and u'' vanish at x = 1 (smooth cutoff, Klicpera et al. 2020).
    """

    def __init__(self, exponent: int = 5) -> None:
        super().__init__()
        if exponent < 1:
            raise ValueError(f"envelope exponent must be a positive integer, got {exponent!r}")
        p = float(exponent)
        self.exponent = int(exponent)
        self.a = -(p + 1.0) * (p + 2.0) / 2.0
        self.b = p * (p + 2.0)
        self.c = -p * (p + 1.0) / 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp = x.pow(self.exponent)
        value = 1.0 + xp * (self.a + x * (self.b + self.c * x))
        return torch.where(x < 1.0, value, torch.zeros_like(x))

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """du/dx: p x^(p-1) (a + b x + c x^2) + x^p (b + 2 c x) for x < 1, else 0."""
        p = self.exponent
        slope = p * x.pow(p - 1) * (self.a + x * (self.b + self.c * x)) + x.pow(p) * (self.b + 2.0 * self.c * x)
        return torch.where(x < 1.0, slope, torch.zeros_like(x))


class BesselBasis(torch.nn.Module):
    """Radial basis e_RBF,n(d) = sqrt(2/c) sin(f_n d/c) / d * u(d/c), f_n initialised at n*pi.

    The frequencies are trainable, as in the reference implementation.
    """

    def __init__(self, num_radial: int, cutoff: float, envelope_exponent: int = 5) -> None:
        super().__init__()
        if num_radial < 1:
            raise ValueError(f"num_radial must be >= 1, got {num_radial!r}")
        if cutoff <= 0:
            raise ValueError(f"cutoff must be positive (Å), got {cutoff!r}")
        self.cutoff = float(cutoff)
        self.norm_const = math.sqrt(2.0 / self.cutoff)
        self.envelope = PolynomialEnvelope(envelope_exponent)
        self.frequencies = torch.nn.Parameter(
            math.pi * torch.arange(1, num_radial + 1, dtype=torch.get_default_dtype())
        )

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        """(n_edges,) distances in Å -> (n_edges, num_radial)."""
        d = distances[:, None]
        x = d / self.cutoff
        return self.envelope(x) * self.norm_const * torch.sin(self.frequencies * x) / d


def spherical_bessel_roots(num_spherical: int, num_radial: int) -> np.ndarray:
    """First `num_radial` positive roots z_ln of j_l for l < num_spherical, shape (L, N)."""
    roots = np.zeros((num_spherical, num_radial))
    for l in range(num_spherical):
        # Roots of j_l lie beyond l; scan a fine grid for sign changes, then polish with brentq.
        grid = np.linspace(max(l, 1e-3) + 1e-3, (num_radial + l + 2) * np.pi, 20000)
        values = spherical_jn(l, grid)
        brackets = np.nonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0)[0][:num_radial]
        if len(brackets) < num_radial:  # pragma: no cover - grid always spans enough roots
            raise RuntimeError(f"found only {len(brackets)} roots of j_{l}")
        for n, i in enumerate(brackets):
            roots[l, n] = brentq(lambda x: spherical_jn(l, x), grid[i], grid[i + 1], xtol=1e-14)
    return roots


def spherical_bessel(l: int, x: torch.Tensor) -> torch.Tensor:
    """Spherical Bessel function j_l(x), elementwise and differentiable.

    Uses the upward recurrence where it is stable (x >= l + 1) and a power series below it, so
    the result stays accurate for short distances where the recurrence cancels catastrophically.
    """
    safe = x.clamp(min=float(l + 1))  # recurrence branch is only selected where x >= l + 1
    sin, cos = torch.sin(safe), torch.cos(safe)
    j_prev, j_curr = sin / safe, sin / safe**2 - cos / safe
    if l == 0:
        recurrence = j_prev
    else:
        for order in range(1, l):
            j_prev, j_curr = j_curr, (2 * order + 1) / safe * j_curr - j_prev
        recurrence = j_curr
    # j_l(x) = x^l / (2l+1)!! * sum_k (-x^2/2)^k / (k! (2l+3)(2l+5)...(2l+2k+1))
    x2 = x * x
    term = torch.ones_like(x)
    series = torch.ones_like(x)
    for k in range(1, _SERIES_TERMS):
        term = term * (-x2 / 2.0) / (k * (2 * l + 2 * k + 1))
        series = series + term
    double_factorial = float(np.prod(np.arange(2 * l + 1, 0, -2)))
    series = series * x.pow(l) / double_factorial
    return torch.where(x < l + 1.0, series, recurrence)


def spherical_bessel_orders(x: torch.Tensor) -> torch.Tensor:
    """j_l(x[l]) for every order l = 0..L-1 at once: ``x`` has shape (L, ...), row l order l.

    The same numerics as ``spherical_bessel`` (recurrence for x >= l + 1, power series below),
    vectorised over the orders: the radial basis needs all orders on every edge, and evaluating
    them one by one costs hundreds of tiny tensor operations per forward and backward pass.
    """
    return _bessel_orders(x, slopes=False)[0]


@torch.no_grad()
def spherical_bessel_orders_and_derivatives(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``spherical_bessel_orders(x)`` (bitwise) and the derivatives j_l'(x[l]), without autograd."""
    values, slopes = _bessel_orders(x, slopes=True)
    assert slopes is not None
    return values, slopes


def _bessel_orders(x: torch.Tensor, slopes: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """j_l(x[l]) and, with ``slopes``, j_l'(x[l]); the values are the same either way, bitwise.

    Series branch: with t = -x^2/2 and S(t) = sum_k c_k t^k, j_l = x^l S / (2l+1)!!, so
    j_l' = (l x^(l-1) S - x^(l+1) S'(t)) / (2l+1)!!, where c_k t^(k-1) is the previous term
    divided by the k-th term ratio.
    """
    orders = _orders_like(x)
    safe = torch.maximum(x, orders + 1.0)  # recurrence branch is only selected where x >= l + 1
    recurrence, recurrence_slopes = _upward_recurrence(safe, slopes)
    series = _SeriesEntries(x, orders)
    term = torch.ones_like(series.x)
    total = torch.ones_like(series.x)
    total_slope = torch.zeros_like(series.x) if slopes else None  # S'(t) = sum_k k c_k t^(k-1)
    for k in range(1, _SERIES_TERMS):
        denominator = series.denominators[:, k - 1]
        if total_slope is not None:
            total_slope.add_(term / denominator, alpha=k)
        term = term * series.minus_half_x2 / denominator
        total = total + term
    power = series.x.pow(series.orders)
    values = series.insert(recurrence, total * power / series.double_factorials)
    if total_slope is None:
        return values, None
    lower_power = series.orders * series.x.pow((series.orders - 1.0).clamp(min=0.0))  # l x^(l-1); 0 for l = 0
    series_slopes = (lower_power * total - power * series.x * total_slope) / series.double_factorials
    assert recurrence_slopes is not None  # _upward_recurrence returns slopes whenever slopes is true, as total_slope
    return values, series.insert(recurrence_slopes, series_slopes)


def _orders_like(x: torch.Tensor) -> torch.Tensor:
    """The order l of each row of an (L, ...) tensor, shaped to broadcast against it."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    return torch.arange(x.shape[0], dtype=x.dtype, device=x.device).reshape(shape)


def _upward_recurrence(safe: torch.Tensor, slopes: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """j_l(safe[l]) by upward recurrence, and with ``slopes`` also j_l'(safe[l]).

    After step ``order`` the tensors hold rows order+1.. only, since row l needs exactly l steps;
    the step before j_l gives j_(l-1) at the same argument, so j_l' = j_(l-1) - (l+1)/x j_l
    (and j_0' = -j_1) costs one more product per order.
    """
    num_orders = safe.shape[0]
    sin, cos = torch.sin(safe), torch.cos(safe)
    j_zero = sin / safe
    rows = [j_zero[:1]]
    derivatives = []
    if slopes:
        j_one = sin / safe**2 - cos / safe
        derivatives.append(-j_one[:1])
    if num_orders > 1:
        j_prev = j_zero[1:]
        # Without slopes j_1 is formed on rows 1.. only: the same values, and the same autograd
        # graph as before, so the double backward of force training stays bitwise unchanged.
        j_curr = j_one[1:] if slopes else sin[1:] / safe[1:] ** 2 - cos[1:] / safe[1:]
        for order in range(num_orders - 1):
            if order > 0:
                j_next = (2 * order + 1) / safe[order:] * j_curr - j_prev
                j_prev, j_curr = j_curr[1:], j_next[1:]
            rows.append(j_curr[:1])
            if slopes:
                derivatives.append(j_prev[:1] - (order + 2) / safe[order + 1 : order + 2] * j_curr[:1])
    return torch.cat(rows, dim=0), torch.cat(derivatives, dim=0) if slopes else None


@functools.lru_cache(maxsize=16)
def _series_tables(num_orders: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per order l: the term ratios k (2l+2k+1), k = 1.., and (2l+1)!! (exact integers, built once)."""
    k = torch.arange(1, _SERIES_TERMS, dtype=dtype, device=device)
    l = torch.arange(num_orders, dtype=dtype, device=device)[:, None]
    double_factorials = [float(np.prod(np.arange(2 * n + 1, 0, -2))) for n in range(num_orders)]
    return k * (2 * l + 2 * k + 1), torch.tensor(double_factorials, dtype=dtype, device=device)


class _SeriesEntries:
    """The entries of an (L, ...) argument tensor that take the power series (x < l + 1).

    j_l(x) = x^l / (2l+1)!! * sum_k (-x^2/2)^k / (k! (2l+3)(2l+5)...(2l+2k+1)) is the most
    expensive branch and a minority of entries, so it is evaluated on those entries only,
    found by one ``nonzero``.
    """

    def __init__(self, x: torch.Tensor, orders: torch.Tensor) -> None:
        self.index = torch.nonzero((x < orders + 1.0).reshape(-1)).squeeze(1)
        order_index = torch.div(self.index, max(x[0].numel(), 1), rounding_mode="floor")
        self.x = torch.index_select(x.reshape(-1), 0, self.index)
        self.orders = order_index.to(x.dtype)
        self.minus_half_x2 = -(self.x * self.x) / 2.0
        denominators, double_factorials = _series_tables(x.shape[0], x.dtype, x.device)
        self.denominators = denominators[order_index]  # (entries, terms - 1)
        self.double_factorials = double_factorials[order_index]

    def insert(self, recurrence: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``recurrence`` with the series ``values`` in the series entries."""
        return recurrence.reshape(-1).index_copy(0, self.index, values).reshape(recurrence.shape)


class _RadialWithDerivative(torch.autograd.Function):
    """The radial part of a :class:`SphericalBasis` whose backward uses its analytic derivative.

    Forces need one backward pass through the basis at every MD step; autograd would replay
    the 17-term series and the recurrence, dozens of operations on (L, n_edges, N) tensors.
    The forward computes the derivative alongside the values, so the backward is one product
    and a sum. A second derivative (``create_graph=True``) is taken through plain autograd on
    recomputed values, so higher derivatives stay exact too.
    """

    @staticmethod
    def forward(ctx: Any, distances: torch.Tensor, basis: "SphericalBasis") -> torch.Tensor:
        values, slopes = basis.radial_and_derivative(distances)
        ctx.basis = basis
        ctx.save_for_backward(distances, slopes)
        return values

    @staticmethod
    def backward(ctx: Any, grad_values: torch.Tensor) -> tuple[torch.Tensor, None]:
        distances, slopes = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the gradient itself must be differentiable
            with torch.enable_grad():
                values = ctx.basis._radial_values(distances)
                (grad,) = torch.autograd.grad(values, distances, grad_values, create_graph=True)
            return grad, None
        return (grad_values * slopes).sum(dim=(0, 2)), None


def legendre_spherical_harmonics(num_spherical: int, cos_angle: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Real spherical harmonics with m = 0: Y_l0 = sqrt((2l+1)/4pi) P_l(cos), orders along ``dim``.

    A (n,) input gives (n, L); ``dim`` places the new axis elsewhere for block-shaped inputs.
    """
    p_prev, p_curr = torch.ones_like(cos_angle), cos_angle
    polynomials = [p_prev, p_curr][:num_spherical]
    for l in range(1, num_spherical - 1):
        p_prev, p_curr = p_curr, ((2 * l + 1) * cos_angle * p_curr - l * p_prev) / (l + 1)
        polynomials.append(p_curr)
    norms = [math.sqrt((2 * l + 1) / (4 * math.pi)) for l in range(num_spherical)]
    return torch.stack([n * p for n, p in zip(norms, polynomials)], dim=dim)


class SphericalBasis(torch.nn.Module):
    """2D spherical Fourier-Bessel basis for triplets, in GemNet's efficient factorised form.

    The radial part sqrt(2/c^3)/|j_{l+1}(z_ln)| j_l(z_ln d/c) u(d/c) depends only on the distance
    of the edge that receives the message, and the angular part Y_l0(angle) only on the
    triplet, so the two are returned separately and combined by the bilinear layer.
    """

    roots: torch.Tensor  # buffers (registered in __init__)
    norms: torch.Tensor

    def __init__(self, num_spherical: int, num_radial: int, cutoff: float, envelope_exponent: int = 5) -> None:
        super().__init__()
        if num_spherical < 1 or num_radial < 1:
            raise ValueError(f"num_spherical and num_radial must be >= 1, got {num_spherical}, {num_radial}")
        self.num_spherical = num_spherical
        self.num_radial = num_radial
        self.cutoff = float(cutoff)
        self.envelope = PolynomialEnvelope(envelope_exponent)
        roots = spherical_bessel_roots(num_spherical, num_radial)
        norms = (
            np.stack([1.0 / np.sqrt(0.5 * spherical_jn(l + 1, roots[l]) ** 2) for l in range(num_spherical)])
            * self.cutoff**-1.5
        )
        dtype = torch.get_default_dtype()
        self.register_buffer("roots", torch.tensor(roots, dtype=dtype), persistent=False)
        self.register_buffer("norms", torch.tensor(norms, dtype=dtype), persistent=False)

    def radial(self, distances: torch.Tensor) -> torch.Tensor:
        """(n_edges,) -> (num_spherical, n_edges, num_radial).

        In eval mode, when forces are wanted, the basis comes with its analytic derivative
        (:class:`_RadialWithDerivative`): the same values, and a backward pass of one product
        instead of one through every term of the series and the recurrence. Training keeps plain
        autograd, whose graph the double backward of force training differentiates.
        """
        if not self.training and torch.is_grad_enabled() and distances.requires_grad:
            return _RadialWithDerivative.apply(distances, self)
        return self._radial_values(distances)

    def _radial_values(self, distances: torch.Tensor) -> torch.Tensor:
        x = distances / self.cutoff
        j_l = spherical_bessel_orders(self.roots[:, None, :] * x[None, :, None])
        # (L, E, N): j_l evaluated at its own roots z_ln * d / c
        return j_l * self.norms[:, None, :] * self.envelope(x)[None, :, None]

    @torch.no_grad()
    def radial_and_derivative(self, distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The radial basis (bitwise that of ``radial``) and its derivative by the distance (1/Å)."""
        x = distances / self.cutoff
        scaled_roots = self.roots[:, None, :]
        j_l, dj_l = spherical_bessel_orders_and_derivatives(scaled_roots * x[None, :, None])
        envelope, envelope_slope = self.envelope(x)[None, :, None], self.envelope.derivative(x)[None, :, None]
        values = j_l * self.norms[:, None, :] * envelope
        # d/dd [norm j_l(z x) u(x)] with x = d / c: norm (z j_l'(z x) u(x) + j_l(z x) u'(x)) / c
        slopes = self.norms[:, None, :] * (scaled_roots * dj_l * envelope + j_l * envelope_slope) / self.cutoff
        return values, slopes

    def angular(self, cos_angle: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Cosines -> their num_spherical harmonics along ``dim``: (n_triplets,) -> (n_triplets, L)."""
        return legendre_spherical_harmonics(self.num_spherical, cos_angle, dim)

    def full(self, distances: torch.Tensor, cos_angle: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """The whole basis of each triplet, (n_triplets, num_spherical * num_radial), l-major.

        ``edge_index`` picks the edge whose distance enters the radial part. GemNet-Q uses this
        unfactorised form for the angle a-b<-d, whose radial edge a-b is an interaction edge.
        """
        radial = self.radial(distances)[:, edge_index, :]  # (L, n_triplets, N)
        basis = radial * self.angular(cos_angle).T[:, :, None]
        return basis.permute(1, 0, 2).reshape(edge_index.shape[0], self.num_spherical * self.num_radial)


def _harmonic_orders(num_spherical: int) -> list[tuple[int, int]]:
    """(l, m) of the L^2 real spherical harmonics, in the reference order m = 0, 1..l, -l..-1."""
    return [(l, m) for l in range(num_spherical) for m in [0, *range(1, l + 1), *range(-l, 0)]]


def normalised_legendre(num_spherical: int, polar: torch.Tensor) -> torch.Tensor:
    """Polar factor of the real spherical harmonics, (n, L^2) in ``_harmonic_orders`` order.

    Column (l, m) is sqrt(2 - delta_m0) K_l|m| P_l^|m|(cos polar), where P_l^m includes sin^m and
    the Condon-Shortley phase and K_lm = sqrt((2l+1)/(4 pi) (l-m)!/(l+m)!).
    """
    cos_polar, sin_polar = torch.cos(polar), torch.sin(polar)
    legendre: dict[tuple[int, int], torch.Tensor] = {}
    for m in range(num_spherical):  # standard recurrences, upward in l at fixed m
        diagonal = torch.ones_like(cos_polar) if m == 0 else -(2 * m - 1) * sin_polar * legendre[(m - 1, m - 1)]
        legendre[(m, m)] = diagonal
        if m + 1 < num_spherical:
            legendre[(m + 1, m)] = (2 * m + 1) * cos_polar * diagonal
        for l in range(m + 2, num_spherical):
            legendre[(l, m)] = ((2 * l - 1) * cos_polar * legendre[(l - 1, m)] - (l + m - 1) * legendre[(l - 2, m)]) / (
                l - m
            )
    columns, norms = [], []
    for l, m in _harmonic_orders(num_spherical):
        k = abs(m)
        columns.append(legendre[(l, k)])
        norms.append(
            math.sqrt((2.0 if m else 1.0) * (2 * l + 1) / (4 * math.pi) * math.factorial(l - k) / math.factorial(l + k))
        )
    return torch.stack(columns, dim=-1) * torch.tensor(norms, dtype=polar.dtype, device=polar.device)


def azimuthal_harmonics(num_spherical: int, azimuth: torch.Tensor) -> torch.Tensor:
    """Azimuthal factor, (n, L^2): 1 for m = 0, cos(m azimuth) for m > 0, sin(|m| azimuth) for m < 0."""
    trig = [torch.ones_like(azimuth)]
    for m in range(1, num_spherical):
        trig += [torch.cos(m * azimuth), torch.sin(m * azimuth)]
    table = torch.stack(trig, dim=-1)  # columns 1, cos(1.), sin(1.), cos(2.), sin(2.), ...
    columns = [0 if m == 0 else (2 * m - 1 if m > 0 else -2 * m) for _, m in _harmonic_orders(num_spherical)]
    return table[:, columns]


def real_spherical_harmonics(num_spherical: int, polar: torch.Tensor, azimuth: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics Y_lm(polar, azimuth) for l < num_spherical, all m: (n, L^2).

    Orthonormal on the sphere, with the Condon-Shortley phase; m > 0 carries cos(m azimuth),
    m < 0 carries sin(|m| azimuth). Within each l the order is m = 0, 1..l, -l..-1, as in the
    reference implementation.
    """
    return normalised_legendre(num_spherical, polar) * azimuthal_harmonics(num_spherical, azimuth)


class TensorBasis(SphericalBasis):
    """3D spherical Fourier-Bessel basis of quadruplets (GemNet-Q), in factorised form.

    For a quadruplet c->a-b<-d the radial part j_l(z_ln d_ca / c) u(d_ca / c) depends on the
    edge c->a only, the angular part Y_lm(angle_cab, dihedral_cabd) on the quadruplet; each
    radial function of order l is repeated for its 2l+1 values of m, giving L^2 angular channels.
    """

    def radial(self, distances: torch.Tensor) -> torch.Tensor:
        """(n_edges,) -> (num_spherical^2, n_edges, num_radial)."""
        return self.repeat_orders(super().radial(distances))

    def repeat_orders(self, radial: torch.Tensor) -> torch.Tensor:
        """(L, n_edges, N) radial part of the 2D basis (same cutoff) -> (L^2, n_edges, N)."""
        repeats = torch.arange(self.num_spherical, device=radial.device) * 2 + 1
        return torch.repeat_interleave(radial, repeats, dim=0)

    def angular(  # type: ignore[override]
        self, polar: torch.Tensor, azimuth: torch.Tensor, polar_index: torch.Tensor
    ) -> torch.Tensor:
        """Y_lm(polar[polar_index], azimuth), (n_quadruplets, num_spherical^2).

        Many quadruplets share one angle c-a-b, so its Legendre factor is computed once per
        ``polar`` entry and gathered by ``polar_index``; angles in radians.
        """
        legendre = normalised_legendre(self.num_spherical, polar)[polar_index]
        return legendre * azimuthal_harmonics(self.num_spherical, azimuth)
