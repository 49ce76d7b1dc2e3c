"""GemNet blocks: triplet and quadruplet interactions, interaction blocks, atom update, output.

Edges are directed, s -> t. A triplet joins an incoming edge k -> j with an outgoing edge
j -> i (k != i); the message of the outgoing edge is updated from the incoming ones, weighted by
the spherical basis of the angle at j. GemNet-Q adds quadruplets c->a - b<-d: the message of
c->a is updated from those of d->b, weighted by bases of the distance d_ab, the angle a-b-d and
the angle c-a-b together with the dihedral angle c-a-b-d.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from gemrepro.model.graph import MolecularGraph, QuadrupletGraph
from gemrepro.model.layers import (
    Dense,
    EdgeEmbedding,
    EfficientBilinear,
    ResidualLayer,
    ScaleFactor,
    gather_padded,
)

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_3 = 1.0 / math.sqrt(3.0)


def update_both_directions(out: Dense, swap: Dense, x: torch.Tensor, edge_swap: torch.Tensor) -> torch.Tensor:
    """``(out(x) + swap(x)[edge_swap]) / sqrt(2)``: a message updates its edge and the reverse edge.

    The two activated up-projections run as one matmul and one activation. Given ``x`` row by
    reverse edge (``x[edge_swap]``), exchanging ``out`` and ``swap`` gives the same result.
    """
    weight = torch.cat([out.weight, swap.weight], dim=0)
    both = out.activation(torch.nn.functional.linear(x, weight))
    x_out, x_swap = both[:, : out.weight.shape[0]], both[:, out.weight.shape[0] :]
    return torch.index_select(x_swap, 0, edge_swap).add_(x_out).mul_(_INV_SQRT_2)


class TripletInteraction(torch.nn.Module):
    """Directional message passing over triplets (GemNet eq. for m_ji from m_kj, angle kji)."""

    def __init__(
        self,
        emb_size_edge: int,
        emb_size_trip: int,
        emb_size_bilinear: int,
        emb_size_rbf: int,
        emb_size_cbf: int,
    ) -> None:
        super().__init__()
        self.dense_in = Dense(emb_size_edge, emb_size_edge, activation=True)
        self.mlp_rbf = Dense(emb_size_rbf, emb_size_edge)
        self.scale_rbf = ScaleFactor()
        self.down_projection = Dense(emb_size_edge, emb_size_trip, activation=True)
        self.bilinear = EfficientBilinear(emb_size_trip, emb_size_cbf, emb_size_bilinear)
        self.scale_cbf_sum = ScaleFactor()
        self.up_projection_out = Dense(emb_size_bilinear, emb_size_edge, activation=True)
        self.up_projection_swap = Dense(emb_size_bilinear, emb_size_edge, activation=True)

    def forward(
        self,
        m: torch.Tensor,
        rbf3: torch.Tensor,
        cbf3: Sequence[torch.Tensor],
        graph: MolecularGraph,
    ) -> torch.Tensor:
        """``cbf3``: the blocks of ``EfficientDownProjection.neighbourhood_coefficients``."""
        x = self.dense_in(m)
        x = self.scale_rbf(x, x * self.mlp_rbf(rbf3))  # radial filter of the incoming edge
        x = self.down_projection(x)  # (n_edges, emb_size_trip)
        summed_reverse = self.bilinear(cbf3, x, graph.neighbourhoods)  # row e: the sum of edge_swap[e]
        # The scale is fitted against the per-triplet messages, as in the reference.
        summed_reverse = self.scale_cbf_sum(x[graph.triplet_in] if self.scale_cbf_sum.fitting else x, summed_reverse)
        # Update both the edge and its reverse, so information flows in both directions.
        return update_both_directions(self.up_projection_swap, self.up_projection_out, summed_reverse, graph.edge_swap)


class QuadrupletInteraction(torch.nn.Module):
    """Message passing over quadruplets c->a - b<-d (GemNet-Q).

    m_db is filtered by its radial basis, then per db triplet by the basis of (d_ab, angle a-b-d),
    then summed into c->a through the bilinear layer with the basis of (d_ca, angle c-a-b,
    dihedral c-a-b-d). As for triplets, the result updates both c->a and its reverse a->c.
    """

    def __init__(
        self,
        emb_size_edge: int,
        emb_size_quad: int,
        emb_size_bilinear: int,
        emb_size_rbf: int,
        emb_size_cbf: int,
        emb_size_sbf: int,
    ) -> None:
        super().__init__()
        self.dense_in = Dense(emb_size_edge, emb_size_edge, activation=True)
        self.mlp_rbf = Dense(emb_size_rbf, emb_size_edge)
        self.scale_rbf = ScaleFactor()
        self.mlp_cbf = Dense(emb_size_cbf, emb_size_quad)
        self.scale_cbf = ScaleFactor()
        self.bilinear = EfficientBilinear(emb_size_quad, emb_size_sbf, emb_size_bilinear)
        self.scale_sbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_size_edge, emb_size_quad, activation=True)
        self.up_projection_out = Dense(emb_size_bilinear, emb_size_edge, activation=True)
        self.up_projection_swap = Dense(emb_size_bilinear, emb_size_edge, activation=True)

    def forward(
        self,
        m: torch.Tensor,
        rbf4: torch.Tensor,
        cbf4: torch.Tensor,
        sbf4: torch.Tensor,
        quads: QuadrupletGraph,
    ) -> torch.Tensor:
        """``sbf4``: the coefficients of ``EfficientDownProjection.coefficients``."""
        x = self.dense_in(m)
        x = self.scale_rbf(x, x * self.mlp_rbf(rbf4))  # radial filter of d->b
        x = self.down_projection(x)[quads.db_edge]  # (n_db, emb_size_quad)
        x = self.scale_cbf(x, x * self.mlp_cbf(cbf4))  # distance a-b and angle a-b-d
        summed = self.bilinear.forward_packed(sbf4, gather_padded(x, quads.quad_db_padded))
        # The scale is fitted against the per-quadruplet messages, as in the reference.
        summed = self.scale_sbf_sum(x[quads.quad_db] if self.scale_sbf_sum.fitting else x, summed)
        return update_both_directions(self.up_projection_out, self.up_projection_swap, summed, quads.edges.edge_swap)


class AtomUpdateBlock(torch.nn.Module):
    """h_i from the radially filtered messages of the edges that end at atom i."""

    def __init__(self, emb_size_atom: int, emb_size_edge: int, emb_size_rbf: int, num_residual: int) -> None:
        super().__init__()
        self.dense_rbf = Dense(emb_size_rbf, emb_size_edge)
        self.scale_sum = ScaleFactor()
        self.layers = torch.nn.Sequential(
            Dense(emb_size_edge, emb_size_atom, activation=True),
            *[ResidualLayer(emb_size_atom) for _ in range(num_residual)],
        )

    def aggregate(self, m: torch.Tensor, rbf: torch.Tensor, graph: MolecularGraph) -> torch.Tensor:
        x = m * self.dense_rbf(rbf)
        # index_add: its backward is a row gather (index_select), cheaper than scatter's gather.
        summed = x.new_zeros((graph.num_atoms, x.shape[1])).index_add_(0, graph.edge_dst, x)
        return self.scale_sum(m, summed)

    def forward(self, m: torch.Tensor, rbf: torch.Tensor, graph: MolecularGraph) -> torch.Tensor:
        return self.layers(self.aggregate(m, rbf, graph))


class OutputBlock(AtomUpdateBlock):
    """Per-atom energy contribution of one block: atom update followed by a linear read-out."""

    def __init__(self, emb_size_atom: int, emb_size_edge: int, emb_size_rbf: int, num_residual: int) -> None:
        super().__init__(emb_size_atom, emb_size_edge, emb_size_rbf, num_residual)
        self.out_energy = Dense(emb_size_atom, 1)

    def forward(self, m: torch.Tensor, rbf: torch.Tensor, graph: MolecularGraph) -> torch.Tensor:
        return self.out_energy(super().forward(m, rbf, graph))[:, 0]


class InteractionBlock(torch.nn.Module):
    """One GemNet-T interaction: triplet messages, residual edge updates, atom update, concat."""

    def __init__(
        self,
        emb_size_atom: int,
        emb_size_edge: int,
        emb_size_trip: int,
        emb_size_rbf: int,
        emb_size_cbf: int,
        emb_size_bil_trip: int,
        num_before_skip: int,
        num_after_skip: int,
        num_concat: int,
        num_atom: int,
    ) -> None:
        super().__init__()
        self.dense_skip = Dense(emb_size_edge, emb_size_edge, activation=True)
        self.triplet = TripletInteraction(emb_size_edge, emb_size_trip, emb_size_bil_trip, emb_size_rbf, emb_size_cbf)
        self.layers_before_skip = torch.nn.Sequential(*[ResidualLayer(emb_size_edge) for _ in range(num_before_skip)])
        self.layers_after_skip = torch.nn.Sequential(*[ResidualLayer(emb_size_edge) for _ in range(num_after_skip)])
        self.atom_update = AtomUpdateBlock(emb_size_atom, emb_size_edge, emb_size_rbf, num_atom)
        self.concat = EdgeEmbedding(emb_size_atom, emb_size_edge, emb_size_edge)
        self.layers_after_concat = torch.nn.Sequential(*[ResidualLayer(emb_size_edge) for _ in range(num_concat)])

    def forward(
        self,
        h: torch.Tensor,
        m: torch.Tensor,
        rbf3: torch.Tensor,
        cbf3: Sequence[torch.Tensor],
        rbf_h: torch.Tensor,
        graph: MolecularGraph,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.add(self.dense_skip(m), self.triplet(m, rbf3, cbf3, graph)).mul_(_INV_SQRT_2)
        return self.update(h, m, x, rbf_h, graph)

    def update(
        self, h: torch.Tensor, m: torch.Tensor, x: torch.Tensor, rbf_h: torch.Tensor, graph: MolecularGraph
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Residual edge update with the merged messages ``x``, atom update, concatenation."""
        x = self.layers_before_skip(x)
        m = self.layers_after_skip(torch.add(m, x).mul_(_INV_SQRT_2))

        h = torch.add(h, self.atom_update(m, rbf_h, graph)).mul_(_INV_SQRT_2)

        m_concat = self.layers_after_concat(self.concat(h, m, graph.edge_src, graph.edge_dst))
        m = torch.add(m, m_concat).mul_(_INV_SQRT_2)
        return h, m


class QuadrupletInteractionBlock(InteractionBlock):
    """One GemNet-Q interaction: the GemNet-T block with quadruplet messages merged in."""

    def __init__(
        self,
        emb_size_atom: int,
        emb_size_edge: int,
        emb_size_trip: int,
        emb_size_quad: int,
        emb_size_rbf: int,
        emb_size_cbf: int,
        emb_size_sbf: int,
        emb_size_bil_trip: int,
        emb_size_bil_quad: int,
        num_before_skip: int,
        num_after_skip: int,
        num_concat: int,
        num_atom: int,
    ) -> None:
        super().__init__(
            emb_size_atom,
            emb_size_edge,
            emb_size_trip,
            emb_size_rbf,
            emb_size_cbf,
            emb_size_bil_trip,
            num_before_skip,
            num_after_skip,
            num_concat,
            num_atom,
        )
        self.quadruplet = QuadrupletInteraction(
            emb_size_edge, emb_size_quad, emb_size_bil_quad, emb_size_rbf, emb_size_cbf, emb_size_sbf
        )

    def forward(  # type: ignore[override]
        self,
        h: torch.Tensor,
        m: torch.Tensor,
        rbf3: torch.Tensor,
        cbf3: Sequence[torch.Tensor],
        rbf_h: torch.Tensor,
        quads: QuadrupletGraph,
        rbf4: torch.Tensor,
        cbf4: torch.Tensor,
        sbf4: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        graph = quads.edges
        x = (
            self.dense_skip(m) + self.triplet(m, rbf3, cbf3, graph) + self.quadruplet(m, rbf4, cbf4, sbf4, quads)
        ) * _INV_SQRT_3
        return self.update(h, m, x, rbf_h, graph)
