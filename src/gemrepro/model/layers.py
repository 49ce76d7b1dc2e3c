"""Building layers of GemNet: dense/residual layers, embeddings and fitted scale factors.

Weights use the "He-orthogonal" initialisation of the reference implementation (orthogonal,
standardised, scaled by 1/sqrt(fan_in)) and no biases, so that a zero edge message stays zero;
this is what makes an atom that has no neighbours contribute exactly nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from gemrepro.model.graph import Neighbourhoods


def he_orthogonal_(weight: torch.Tensor) -> torch.Tensor:
    """Orthogonal init, standardised per output unit, scaled to variance 1/fan_in (in place).

    For a 3-D tensor (the bilinear weights) the first two axes together are the fan-in.
    """
    with torch.no_grad():
        torch.nn.init.orthogonal_(weight)
        fan_in = weight.shape[-1] if weight.dim() == 2 else weight.shape[0] * weight.shape[1]
        axes = (1,) if weight.dim() == 2 else (0, 1)
        mean = weight.mean(dim=axes, keepdim=True)
        var = weight.var(dim=axes, keepdim=True, unbiased=False)
        weight.sub_(mean).div_(torch.sqrt(var + 1e-6)).mul_(math.sqrt(1.0 / fan_in))
    return weight


_INV_0_6 = 1.0 / 0.6
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


class ScaledSiLU(torch.nn.Module):
    """SiLU divided by 0.6 so that unit-variance inputs give roughly unit-variance outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place on SiLU's fresh output (its backward needs only the input): one tensor less
        # per activation, and activations run on every edge of every layer.
        return torch.nn.functional.silu(x).mul_(_INV_0_6)


class Dense(torch.nn.Module):
    """Bias-free linear layer with optional scaled-SiLU activation."""

    def __init__(self, in_features: int, out_features: int, activation: bool = False) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features, bias=False)
        he_orthogonal_(self.linear.weight)
        self.activation = ScaledSiLU() if activation else torch.nn.Identity()

    @property
    def weight(self) -> torch.Tensor:  # a Parameter; torch's stubs type Linear.weight as Tensor
        return self.linear.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))


class ResidualLayer(torch.nn.Module):
    """x -> (x + Dense(Dense(x))) / sqrt(2): variance-preserving residual update."""

    def __init__(self, units: int, num_layers: int = 2) -> None:
        super().__init__()
        self.mlp = torch.nn.Sequential(*[Dense(units, units, activation=True) for _ in range(num_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.add(x, self.mlp(x)).mul_(_INV_SQRT_2)


class ScaleFactor(torch.nn.Module):
    """Multiplies by a constant fitted once so that activations keep the variance of a reference.

    Sums over a variable number of neighbours change the variance of a message; GemNet fixes
    this with a factor fitted on a first batch (``fit_scale_factors``). The value is stored as a
    non-trainable parameter (as in the reference code), 1.0 until fitted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()), requires_grad=False)
        self.fitting = False

    def forward(self, reference: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.fitting:
            self._fit(reference, x)
        return x * self.scale

    @torch.no_grad()
    def _fit(self, reference: torch.Tensor, x: torch.Tensor) -> None:
        if reference.shape[0] < 2 or x.shape[0] < 2:
            return  # too few samples to estimate a variance; keep the current value
        variance_in = reference.var(dim=0, unbiased=False).mean()
        variance_out = x.var(dim=0, unbiased=False).mean()
        if variance_out > 0 and torch.isfinite(variance_in / variance_out):
            self.scale.fill_(torch.sqrt(variance_in / variance_out).item())


class AtomEmbedding(torch.nn.Module):
    """Learned embedding per element; row Z-1 for atomic number Z."""

    def __init__(self, emb_size: int, num_elements: int) -> None:
        super().__init__()
        self.num_elements = num_elements
        self.embeddings = torch.nn.Embedding(num_elements, emb_size)
        torch.nn.init.uniform_(self.embeddings.weight, -math.sqrt(3.0), math.sqrt(3.0))

    def forward(self, atomic_numbers: torch.Tensor) -> torch.Tensor:
        return self.embeddings(atomic_numbers - 1)


class EdgeEmbedding(torch.nn.Module):
    """m_st = Dense([h_s, h_t, e_st]): joins the two atom embeddings with an edge feature."""

    def __init__(self, atom_features: int, edge_features: int, out_features: int) -> None:
        super().__init__()
        self.dense = Dense(2 * atom_features + edge_features, out_features, activation=True)

    def forward(
        self, h: torch.Tensor, edge_features: torch.Tensor, edge_src: torch.Tensor, edge_dst: torch.Tensor
    ) -> torch.Tensor:
        # Dense([h_s, h_t, e]) = W_s h_s + W_t h_t + W_e e: project the atoms before gathering them
        # to their edges (ten times fewer rows) instead of concatenating per edge.
        atoms = h.shape[-1]
        weight = self.dense.weight
        w_src, w_dst, w_edge = weight[:, :atoms], weight[:, atoms : 2 * atoms], weight[:, 2 * atoms :]
        linear = torch.nn.functional.linear
        x = torch.index_select(linear(h, w_src), 0, edge_src)
        x = x.add_(torch.index_select(linear(h, w_dst), 0, edge_dst)).add_(linear(edge_features, w_edge))
        return self.dense.activation(x)


class EfficientDownProjection(torch.nn.Module):
    """Projects the radial part of a spherical basis and contracts it with the angular part.

    GemNet's factorised basis (Gasteiger et al. 2021, App. on efficiency): the radial part
    depends only on the edge receiving a message, the angular part only on the triplet (or
    quadruplet), so the full (n_triplets, num_spherical * num_radial) basis is never built.
    """

    def __init__(self, num_spherical: int, num_radial: int, emb_size_cbf: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(num_spherical, num_radial, emb_size_cbf))
        he_orthogonal_(self.weight)

    def project(self, radial: torch.Tensor) -> torch.Tensor:
        """(L, n_edges, num_radial) radial basis -> (n_edges, emb_size_cbf, L)."""
        return torch.matmul(radial, self.weight).permute(1, 2, 0)

    def coefficients(self, radial: torch.Tensor, angular: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """The basis contracted over orders l once: (n_edges, emb_size_cbf, k_max).

        coefficients[e, i, k] = sum_l radial_w[e, i, l] angular[e, l, k]. Every interaction block
        reuses it, so each block needs one small batched matmul instead of two. ``padding`` is the
        (n_edges, k_max) table of ``padding_index`` into the rows of ``angular``.
        """
        packed = gather_padded(angular, padding)  # (E, K, L)
        return torch.matmul(self.project(radial), packed.transpose(1, 2))

    def neighbourhood_coefficients(
        self,
        radial: torch.Tensor,
        directions: torch.Tensor,
        neighbourhoods: Neighbourhoods,
        angular: Callable[[torch.Tensor, int], torch.Tensor],
    ) -> tuple[torch.Tensor, ...]:
        """The triplet basis contracted over orders, per block of ``neighbourhoods``.

        ``radial`` (L, n_edges, num_radial) is the radial basis of each edge, ``directions``
        (n_edges, 3) its unit vector and ``angular(cosines, dim)`` the angular basis. For the
        atoms j of a block of width w the result is (n_atoms, w * emb_size_cbf, w): entry
        (s_out, i; s_in) is sum_l radial_w[j -> i, i, l] Y_l(angle k-j-i) for the incoming edge
        k -> j of slot s_in and the outgoing edge j -> i, the reverse of slot s_out's edge (same
        length, so the same radial part). The diagonal s_out == s_in (k == i) is no triplet and
        is zero, and so is every empty slot.
        """
        radial_w = self.project(radial)  # (E, cbf, L)
        radial_w = torch.cat([radial_w, radial_w.new_zeros((1,) + radial_w.shape[1:])])
        directions = torch.cat([directions, directions.new_zeros((1, 3))])
        blocks = []
        for table in neighbourhoods.tables:
            atoms, width = table.shape
            index = table.reshape(-1)
            # Both edges point into j, so cos(angle k-j-i) is the dot product of their directions.
            unit = torch.index_select(directions, 0, index).reshape(atoms, width, 3)
            cosines = torch.matmul(unit, unit.transpose(1, 2)).clamp(-1.0, 1.0)  # (n, s_out, s_in)
            not_self = 1.0 - torch.eye(width, dtype=cosines.dtype, device=cosines.device)
            basis = angular(cosines, -2) * not_self[:, None, :]  # (n, s_out, L, s_in)
            projected = torch.index_select(radial_w, 0, index).reshape((atoms, width) + radial_w.shape[1:])
            blocks.append(torch.matmul(projected, basis).reshape(atoms, width * radial_w.shape[1], width))
        return tuple(blocks)


class EfficientBilinear(torch.nn.Module):
    """Bilinear layer of the triplet interaction, summed over the triplets of each edge.

    out_e = sum_{t, i} W[t, i, :] * sum_k coefficients[e, i, k] x[e, k, t], where x[e, k] is the
    down-projected message of the k-th incoming edge of edge e.
    """

    def __init__(self, emb_size_trip: int, emb_size_cbf: int, emb_size_out: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(emb_size_trip, emb_size_cbf, emb_size_out))
        he_orthogonal_(self.weight)

    def forward(
        self, coefficients: Sequence[torch.Tensor], messages: torch.Tensor, neighbourhoods: Neighbourhoods
    ) -> torch.Tensor:
        """The triplet sums with ``EfficientDownProjection.neighbourhood_coefficients``.

        ``messages`` (n_edges, emb_size_trip) are those of the incoming edges. Row e of the result
        (n_edges, out) belongs to the *reverse* of edge e: the blocks are laid out by incoming
        slots, and the outgoing edge of a slot is its reverse.
        """
        trip, _, out = self.weight.shape
        if not neighbourhoods.tables:  # no edges
            return messages.new_zeros((messages.shape[0], out))
        padded = torch.cat([messages, messages.new_zeros((1, trip))])
        sums = []
        for coefficient, table in zip(coefficients, neighbourhoods.tables, strict=True):
            atoms, width = table.shape
            incoming = torch.index_select(padded, 0, table.reshape(-1)).reshape(atoms, width, trip)
            sums.append(torch.bmm(coefficient, incoming).reshape(atoms * width, -1))  # (n * s_out, cbf * trip)
        stacked = sums[0] if len(sums) == 1 else torch.cat(sums)
        return torch.index_select(self.mix(stacked), 0, neighbourhoods.rows)

    def forward_packed(self, coefficients: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        """The same sum from ``EfficientDownProjection.coefficients`` and messages packed per edge.

        ``packed`` is (n_edges, k_max, emb_size_trip), zero in empty slots.
        """
        return self.mix(torch.matmul(coefficients, packed))  # (E, cbf, trip) -> (E, out)

    def mix(self, mixed: torch.Tensor) -> torch.Tensor:
        """(n, cbf, trip) or (n, cbf * trip) -> (n, out) through W[t, i, :], as one plain matmul."""
        trip, cbf, out = self.weight.shape
        weight = self.weight.permute(1, 0, 2).reshape(cbf * trip, out)
        return torch.matmul(mixed.reshape(mixed.shape[0], cbf * trip), weight)


def gather_padded(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[index] where ``index == len(values)`` selects a zero row (padding of ragged groups)."""
    padded = torch.cat([values, values.new_zeros((1,) + tuple(values.shape[1:]))], dim=0)
    # index_select (backward: index_add) is much cheaper on CPU than advanced indexing (backward:
    # index_put with accumulation), also in the double backward of force training.
    return torch.index_select(padded, 0, index.reshape(-1)).reshape(tuple(index.shape) + tuple(values.shape[1:]))
