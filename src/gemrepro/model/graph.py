"""Neighbour lists, triplets and quadruplets for batches of (non-periodic) molecules, in plain torch.

All atom pairs of each molecule are enumerated block-diagonally (cost sum_g n_g^2, the fastest
option below a few thousand atoms) and filtered by the cutoff. The topology is computed without
gradients; edge vectors are recomputed from the positions inside the model's forward pass so that
forces flow through autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch


@dataclass(frozen=True)
class MolecularGraph:
    """Directed radius graph with triplets.

    Edges s -> t are sorted by (t, s). A triplet joins the incoming edge ``triplet_in`` (k -> j)
    with the outgoing edge ``triplet_out`` (j -> i), k != i; triplets are grouped by
    ``triplet_out`` and ``triplet_slot`` numbers them 0..k_max-1 within each group.

    The model passes triplet messages through ``neighbourhoods`` and needs the triplet list only
    to fit its scale factors, so the list is built on first use, not at every topology change of
    an MD run.
    """

    edge_src: torch.Tensor  # (n_edges,)
    edge_dst: torch.Tensor  # (n_edges,)
    edge_swap: torch.Tensor  # (n_edges,) index of the reverse edge t -> s
    num_atoms: int
    num_graphs: int
    batch: torch.Tensor  # (n_atoms,) molecule index of each atom

    @property
    def num_edges(self) -> int:
        return int(self.edge_src.shape[0])

    @cached_property
    def _triplets(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        return triplets(self.edge_src, self.edge_dst, self.num_atoms)

    @property
    def triplet_in(self) -> torch.Tensor:
        """(n_triplets,) incoming edge k -> j of each triplet."""
        return self._triplets[0]

    @property
    def triplet_out(self) -> torch.Tensor:
        """(n_triplets,) outgoing edge j -> i of each triplet (sorted)."""
        return self._triplets[1]

    @property
    def triplet_slot(self) -> torch.Tensor:
        """(n_triplets,) position of each triplet among those of its outgoing edge."""
        return self._triplets[2]

    @property
    def k_max(self) -> int:
        """Most triplets of any outgoing edge."""
        return self._triplets[3]

    @property
    def num_triplets(self) -> int:
        return int(self.triplet_in.shape[0])

    @cached_property
    def neighbourhoods(self) -> "Neighbourhoods":
        """The incoming edges of every atom as dense blocks (see :class:`Neighbourhoods`)."""
        return neighbourhoods(self.edge_dst, self.num_atoms)


@dataclass(frozen=True)
class Neighbourhoods:
    """Each atom's incoming edges k -> j as one dense row of slots, atoms grouped by degree.

    Edges are sorted by (dst, src), so the incoming edges of atom j are contiguous and slot s is
    its s-th. The outgoing edge j -> i of slot s is the reverse of that slot's edge, so every
    triplet (k -> j, j -> i) of atom j is an entry (s_out, s_in), s_out != s_in, of a
    width x width grid: angles come from one small matrix product per block, and the triplet sum
    of all outgoing edges of j is one matrix product with its incoming messages, without
    gathering a message once per triplet (ten times more rows than edges).

    ``tables[b]`` (n_atoms_b, width_b) holds the edge of each (atom, slot) of block b and
    ``num_edges`` in empty slots (atoms of lower degree than the block's width). ``rows``
    (n_edges,) is the row of each edge's slot when the blocks' n_atoms_b * width_b rows are
    stacked in order.
    """

    tables: tuple[torch.Tensor, ...]
    rows: torch.Tensor


# A block of atoms costs about as much fixed work (a dozen extra operations forward and backward)
# as this many (outgoing, incoming) slot pairs of padding; see ``degree_groups``.
BLOCK_OVERHEAD_SLOTS = 4000


def degree_groups(
    degrees: list[int], counts: list[int], overhead: float = BLOCK_OVERHEAD_SLOTS
) -> list[tuple[int, int]]:
    """Split degrees (descending, distinct, ``counts`` atoms each) into blocks of least total cost.

    A block padded to its largest degree D costs n_atoms * D^2 slot pairs plus ``overhead``;
    one block per distinct degree wastes nothing but pays the overhead many times. Returns
    half-open ranges [start, stop) into ``degrees``, found by dynamic programming.
    """
    n = len(degrees)
    cumulative = [0]
    for count in counts:
        cumulative.append(cumulative[-1] + count)
    best, cut = [0.0] + [float("inf")] * n, [0] * (n + 1)
    for stop in range(1, n + 1):
        for start in range(stop):
            cost = best[start] + (cumulative[stop] - cumulative[start]) * degrees[start] ** 2 + overhead
            if cost < best[stop]:
                best[stop], cut[stop] = cost, start
    groups, stop = [], n
    while stop > 0:
        groups.append((cut[stop], stop))
        stop = cut[stop]
    return groups[::-1]


def neighbourhoods(edge_dst: torch.Tensor, num_atoms: int) -> Neighbourhoods:
    """Dense neighbourhood blocks of the edges ``edge_dst`` (sorted), grouped by ``degree_groups``."""
    device, num_edges = edge_dst.device, int(edge_dst.shape[0])
    degree = torch.bincount(edge_dst, minlength=num_atoms)
    first = torch.cumsum(degree, 0) - degree
    order = torch.argsort(degree, descending=True, stable=True)
    order = order[degree[order] > 0]  # atoms without neighbours take part in no triplet
    distinct, counts = torch.unique_consecutive(degree[order], return_counts=True)
    offsets = [0, *torch.cumsum(counts, 0).tolist()]
    tables, rows, stacked = [], torch.empty(num_edges, dtype=torch.long, device=device), 0
    for start, stop in degree_groups(distinct.tolist(), counts.tolist()):
        atoms = order[offsets[start] : offsets[stop]]
        width = int(distinct[start])
        slot = torch.arange(width, device=device)
        occupied = slot < degree[atoms][:, None]
        table = torch.where(occupied, first[atoms][:, None] + slot, num_edges)
        rows[table[occupied]] = (stacked + torch.arange(len(atoms), device=device)[:, None] * width + slot)[occupied]
        tables.append(table)
        stacked += len(atoms) * width
    return Neighbourhoods(tuple(tables), rows)


def padding_index(
    group: torch.Tensor, slot: torch.Tensor, width: int, num_groups: int, values: torch.Tensor, fill: int
) -> torch.Tensor:
    """(num_groups, width) table holding ``values[i]`` at (group[i], slot[i]) and ``fill`` elsewhere.

    With ``fill`` pointing at a zero row appended to the source, one gather through this table
    packs ragged groups into a zero-padded block (cheaper than a scatter, to any order of autograd).
    """
    table = torch.full((num_groups, width), fill, dtype=torch.long, device=group.device)
    table[group, slot] = values
    return table


def _ragged_arange(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For counts [2, 3] -> owner [0, 0, 1, 1, 1] and position [0, 1, 0, 1, 2]."""
    owner = torch.repeat_interleave(torch.arange(counts.shape[0], device=counts.device), counts)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(owner.shape[0], device=counts.device) - starts[owner]
    return owner, position


def check_batch(batch: torch.Tensor | None, num_atoms: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """Validate the molecule index of each atom; ``None`` means one molecule."""
    if batch is None:
        return torch.zeros(num_atoms, dtype=torch.long, device=device), 1
    if batch.dim() != 1 or batch.shape[0] != num_atoms:
        raise ValueError(f"batch must have shape ({num_atoms},), got {tuple(batch.shape)}")
    if num_atoms == 0:
        return batch.long(), 0
    if bool((batch[1:] < batch[:-1]).any()) or int(batch[0]) < 0:
        raise ValueError("batch must be non-negative and sorted (atoms of one molecule contiguous)")
    return batch.long(), int(batch[-1]) + 1


def candidate_pairs(batch: torch.Tensor, num_graphs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every directed pair (src, dst) of distinct atoms of one molecule, sorted by (dst, src).

    Depends only on which atoms form which molecule, so MD can compute it once per run.
    """
    counts = torch.bincount(batch, minlength=num_graphs)
    first_atom = torch.cumsum(counts, 0) - counts
    dst, position = _ragged_arange(counts[batch])  # every atom paired with its whole molecule
    src = first_atom[batch[dst]] + position
    distinct = src != dst
    return src[distinct], dst[distinct]


def pair_distances(positions: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """|R_dst - R_src| (Å) of each pair, without gradients."""
    with torch.no_grad():
        return torch.linalg.vector_norm(positions[dst] - positions[src], dim=-1)


def radius_edges(
    positions: torch.Tensor, batch: torch.Tensor, num_graphs: int, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed pairs (src, dst) of distinct atoms of one molecule closer than ``cutoff`` Å.

    Returned sorted by (dst, src).
    """
    src, dst = candidate_pairs(batch, num_graphs)
    keep = pair_distances(positions, src, dst) < cutoff
    return src[keep], dst[keep]


def build_graph(positions: torch.Tensor, batch: torch.Tensor | None, cutoff: float) -> MolecularGraph:
    """Radius graph, reverse-edge map and triplets for a batch of molecules."""
    num_atoms = int(positions.shape[0])
    batch, num_graphs = check_batch(batch, num_atoms, positions.device)
    src, dst = radius_edges(positions.detach(), batch, num_graphs, cutoff)
    return graph_from_edges(src, dst, batch, num_graphs)


def graph_from_edges(src: torch.Tensor, dst: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> MolecularGraph:
    """The graph of the directed edges (src, dst), sorted by (dst, src), with its reverse-edge map."""
    num_atoms = int(batch.shape[0])
    # Reverse edges: edges are sorted by the key dst * N + src, so look the swapped key up.
    key = dst * num_atoms + src
    swap = torch.searchsorted(key, src * num_atoms + dst)
    return MolecularGraph(
        edge_src=src, edge_dst=dst, edge_swap=swap, num_atoms=num_atoms, num_graphs=num_graphs, batch=batch
    )


def triplets(
    src: torch.Tensor, dst: torch.Tensor, num_atoms: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(triplet_in, triplet_out, triplet_slot, k_max) of the edges (src, dst), sorted by (dst, src).

    For each outgoing edge j -> i, every edge k -> j ending at j (contiguous, since edges are
    sorted by dst), except the reverse edge i -> j.
    """
    in_degree = torch.bincount(dst, minlength=num_atoms)
    in_start = torch.cumsum(in_degree, 0) - in_degree
    triplet_out, position = _ragged_arange(in_degree[src])
    triplet_in = in_start[src[triplet_out]] + position
    keep = src[triplet_in] != dst[triplet_out]
    triplet_in, triplet_out = triplet_in[keep], triplet_out[keep]
    per_edge = torch.bincount(triplet_out, minlength=src.shape[0])
    _, triplet_slot = _ragged_arange(per_edge)
    k_max = int(per_edge.max()) if per_edge.numel() else 0
    return triplet_in, triplet_out, triplet_slot, k_max


class GraphCache:
    """``build_graph`` that reuses the last topology while no atom pair crosses the cutoff.

    Along an MD trajectory the molecules stay the same and their neighbour lists change rarely,
    yet triplets, reverse edges and padding tables cost a dozen index operations per step.
    Each call computes only the distances of all candidate pairs (kept from the last call while
    ``batch`` is unchanged) and returns the previous ``MolecularGraph`` itself, with its cached
    padding tables, when the set of pairs within the cutoff is the same. The result is always
    identical to ``build_graph(positions, batch, cutoff)``.
    """

    def __init__(self, cutoff: float) -> None:
        if not cutoff > 0:
            raise ValueError(f"cutoff must be positive (Å), got {cutoff!r}")
        self.cutoff = float(cutoff)
        self.clear()

    def clear(self) -> None:
        """Forget the cached topology (the next call rebuilds everything)."""
        self._batch: torch.Tensor | None = None  # batch of the cached candidate pairs
        self._num_graphs = 0
        self._pairs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._within: torch.Tensor | None = None  # which candidate pairs the cached graph holds
        self._graph: MolecularGraph | None = None

    def _same_molecules(self, batch: torch.Tensor | None, num_atoms: int, device: torch.device) -> bool:
        cached = self._batch
        if cached is None or cached.device != device or cached.shape[0] != num_atoms:
            return False
        if batch is None:
            return self._num_graphs == 1 and (num_atoms == 0 or int(cached[-1]) == 0)
        return batch.shape == cached.shape and bool(torch.equal(batch.to(device=device, dtype=torch.long), cached))

    def __call__(self, positions: torch.Tensor, batch: torch.Tensor | None) -> MolecularGraph:
        num_atoms = int(positions.shape[0])
        if not self._same_molecules(batch, num_atoms, positions.device):
            checked, num_graphs = check_batch(batch, num_atoms, positions.device)
            self._batch, self._num_graphs = checked.clone(), num_graphs
            self._pairs = candidate_pairs(self._batch, num_graphs)
            self._within = self._graph = None
        assert self._pairs is not None and self._batch is not None
        src, dst = self._pairs
        within = pair_distances(positions.detach(), src, dst) < self.cutoff
        if self._graph is None or self._within is None or not torch.equal(within, self._within):
            self._graph = graph_from_edges(src[within], dst[within], self._batch, self._num_graphs)
            self._within = within
        return self._graph


def edge_vectors(positions: torch.Tensor, graph: MolecularGraph) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable edge vectors R_t - R_s (Å) and their lengths."""
    # index_select rather than advanced indexing: its backward (index_add) is cheaper on CPU.
    vectors = torch.index_select(positions, 0, graph.edge_dst) - torch.index_select(positions, 0, graph.edge_src)
    return vectors, torch.linalg.vector_norm(vectors, dim=-1)


@dataclass(frozen=True)
class QuadrupletGraph:
    """GemNet-Q quadruplets c->a - b<-d on top of the radius graph ``edges``.

    The outer edges c->a and d->b are edges of ``edges`` (within the embedding cutoff); the
    middle pair b->a is an interaction edge (within the interaction cutoff); c, a, b, d are
    distinct. A quadruplet is assembled from two triplets sharing its interaction edge: the
    "ca" triplet c->a-b and the "db" triplet a-b<-d, as in the reference implementation, so the
    angles of each triplet are computed once however many quadruplets share it. Quadruplets are
    grouped by the edge c->a that receives their message; ``quad_slot`` numbers them within it.
    """

    edges: MolecularGraph
    int_src: torch.Tensor  # (n_int,) atom b of each interaction edge b->a
    int_dst: torch.Tensor  # (n_int,) atom a
    ca_edge: torch.Tensor  # (n_ca,) edge c->a of each ca triplet
    ca_int: torch.Tensor  # (n_ca,) its interaction edge b->a
    db_edge: torch.Tensor  # (n_db,) edge d->b of each db triplet
    db_int: torch.Tensor  # (n_db,) its interaction edge b->a
    quad_ca: torch.Tensor  # (n_quadruplets,) ca triplet of each quadruplet
    quad_db: torch.Tensor  # (n_quadruplets,) db triplet
    quad_edge: torch.Tensor  # (n_quadruplets,) receiving edge c->a (sorted)
    quad_slot: torch.Tensor  # (n_quadruplets,)
    k_max: int

    @property
    def batch(self) -> torch.Tensor:
        return self.edges.batch

    @property
    def num_graphs(self) -> int:
        return self.edges.num_graphs

    @property
    def num_quadruplets(self) -> int:
        return int(self.quad_ca.shape[0])

    @cached_property
    def quad_padding(self) -> torch.Tensor:
        """(n_edges, k_max) quadruplet of each (receiving edge, slot); ``n_quadruplets`` if empty."""
        arange = torch.arange(self.num_quadruplets, device=self.quad_ca.device)
        return padding_index(
            self.quad_edge, self.quad_slot, self.k_max, self.edges.num_edges, arange, self.num_quadruplets
        )

    @cached_property
    def quad_db_padded(self) -> torch.Tensor:
        """(n_edges, k_max) db triplet of each (receiving edge, slot); ``n_db`` marks an empty slot."""
        return padding_index(
            self.quad_edge,
            self.quad_slot,
            self.k_max,
            self.edges.num_edges,
            self.quad_db,
            int(self.db_edge.shape[0]),
        )


def _neighbour_triplets(
    int_atom: torch.Tensor,
    other_atom: torch.Tensor,
    src: torch.Tensor,
    in_start: torch.Tensor,
    in_degree: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every edge x -> int_atom[e] for every interaction edge e, except x == other_atom[e]."""
    owner, position = _ragged_arange(in_degree[int_atom])
    edge = in_start[int_atom[owner]] + position
    keep = src[edge] != other_atom[owner]
    return edge[keep], owner[keep]


def build_quadruplets(graph: MolecularGraph, positions: torch.Tensor, int_cutoff: float) -> QuadrupletGraph:
    """Quadruplets of GemNet-Q for the batch described by ``graph`` (see ``QuadrupletGraph``)."""
    src, dst = graph.edge_src, graph.edge_dst
    int_src, int_dst = radius_edges(positions.detach(), graph.batch, graph.num_graphs, int_cutoff)
    num_int = int(int_src.shape[0])
    in_degree = torch.bincount(dst, minlength=graph.num_atoms)
    in_start = torch.cumsum(in_degree, 0) - in_degree
    ca_edge, ca_int = _neighbour_triplets(int_dst, int_src, src, in_start, in_degree)  # c != b
    db_edge, db_int = _neighbour_triplets(int_src, int_dst, src, in_start, in_degree)  # d != a

    # Every pair (ca triplet, db triplet) sharing an interaction edge; both lists are grouped by
    # interaction edge, so the pairs of edge e are a ragged n_ca[e] x n_db[e] block.
    n_ca = torch.bincount(ca_int, minlength=num_int)
    n_db = torch.bincount(db_int, minlength=num_int)
    quad_int, position = _ragged_arange(n_ca * n_db)
    per_row = n_db[quad_int]
    quad_ca = (torch.cumsum(n_ca, 0) - n_ca)[quad_int] + torch.div(position, per_row, rounding_mode="floor")
    quad_db = (torch.cumsum(n_db, 0) - n_db)[quad_int] + position % per_row
    keep = src[ca_edge[quad_ca]] != src[db_edge[quad_db]]  # c != d
    quad_ca, quad_db = quad_ca[keep], quad_db[keep]

    quad_edge, order = torch.sort(ca_edge[quad_ca], stable=True)
    quad_ca, quad_db = quad_ca[order], quad_db[order]
    per_edge = torch.bincount(quad_edge, minlength=graph.num_edges)
    _, quad_slot = _ragged_arange(per_edge)
    k_max = int(per_edge.max()) if per_edge.numel() else 0
    return QuadrupletGraph(
        edges=graph,
        int_src=int_src,
        int_dst=int_dst,
        ca_edge=ca_edge,
        ca_int=ca_int,
        db_edge=db_edge,
        db_int=db_int,
        quad_ca=quad_ca,
        quad_db=quad_db,
        quad_edge=quad_edge,
        quad_slot=quad_slot,
        k_max=k_max,
    )


def _angle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unsigned angle between vectors (radians, [0, pi]); finite gradients for parallel vectors."""
    cross = torch.linalg.vector_norm(torch.linalg.cross(u, v, dim=-1), dim=-1).clamp(min=1e-9)
    return torch.atan2(cross, (u * v).sum(-1))


def _reject(vector: torch.Tensor, normal: torch.Tensor) -> torch.Tensor:
    """Component of ``vector`` perpendicular to ``normal``."""
    along = (vector * normal).sum(-1) / (normal * normal).sum(-1)
    return vector - along[:, None] * normal


def quadruplet_geometry(
    positions: torch.Tensor, vectors: torch.Tensor, quads: QuadrupletGraph
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Differentiable geometry of the quadruplets c->a-b<-d.

    Returns the interaction distances d_ab (n_int,), cos of the angle a-b-d per db triplet
    (n_db,), the angle c-a-b per ca triplet (n_ca,; ``quads.quad_ca`` maps quadruplets to it)
    and per quadruplet the dihedral angle between the planes (c, a, b) and (a, b, d); angles in
    [0, pi] (radians). ``vectors`` are the edge vectors
    R_dst - R_src of ``quads.edges``.

    The dihedral is unsigned (0 when c and d are on the same side, cis), as in the reference
    implementation: a mirror image has the same dihedrals, so GemNet-Q, like GemNet-T, gives a
    molecule and its mirror image the same energy.
    """
    v_ab = positions[quads.int_src] - positions[quads.int_dst]  # R_b - R_a
    d_ab = torch.linalg.vector_norm(v_ab, dim=-1)

    v_ba = -v_ab[quads.db_int]  # R_a - R_b
    v_bd = -vectors[quads.db_edge]  # R_d - R_b
    cos_abd = (v_ba * v_bd).sum(-1) / (d_ab[quads.db_int] * torch.linalg.vector_norm(v_bd, dim=-1))
    cos_abd = cos_abd.clamp(-1.0, 1.0)

    v_ab_ca = v_ab[quads.ca_int]
    v_ac = -vectors[quads.ca_edge]  # R_c - R_a
    angle_cab = _angle(v_ab_ca, v_ac)
    dihedral = _angle(_reject(v_ac, v_ab_ca)[quads.quad_ca], _reject(v_bd, v_ba)[quads.quad_db])
    return d_ab, cos_abd, angle_cab, dihedral
