"""GemNet-T and GemNet-Q: directional message-passing potentials with conservative forces.

Gasteiger, Becker, Günnemann (2021), "GemNet: Universal Directional Graph Neural Networks for
Molecules": GemNet-T passes messages over triplets (distances and angles), GemNet-Q also over
quadruplets (dihedral angles). Both share one set of layers (``GemNet``). Energies in eV,
positions in Å, forces F = -dE/dR in eV/Å.
"""

from __future__ import annotations

from typing import Any

import torch
from torch_geometric.utils import scatter

from gemrepro.model.basis import BesselBasis, SphericalBasis, TensorBasis
from gemrepro.model.blocks import InteractionBlock, OutputBlock, QuadrupletInteractionBlock
from gemrepro.model.graph import (
    GraphCache,
    MolecularGraph,
    QuadrupletGraph,
    build_quadruplets,
    edge_vectors,
    quadruplet_geometry,
)
from gemrepro.model.layers import AtomEmbedding, Dense, EdgeEmbedding, EfficientDownProjection, ScaleFactor
from gemrepro.model.presets import VARIANTS, GemNetConfig, preset_config


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, otherwise CPU; anything else is passed to torch.

    An explicit CUDA device this machine lacks is refused here, in one line, rather than deep in
    torch at the first tensor moved to it.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device '{resolved}': no CUDA GPU is available here; expected 'cpu' or 'auto'")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"device '{resolved}': this machine has {count} CUDA GPU(s); expected cuda:0..cuda:{count - 1}"
            )
    return resolved


class GemNet(torch.nn.Module):
    """Layers and forward pass shared by GemNet-T and GemNet-Q.

    ``forward(data)`` -> {"energy": (n_graphs,), "forces": (n_atoms, 3)}. ``data`` is a
    torch_geometric ``Data``/``Batch`` (or any object) with ``z`` (long atomic numbers), ``pos``
    (Å) and optionally ``batch`` (molecule index of each atom, sorted). The molecular energy is
    the sum over atoms and blocks of the per-block atomic energies; per-element reference energies
    are added outside the network, by :class:`~gemrepro.model.EnergyShift`.
    """

    variant = ""  # "T" or "Q" in the subclasses

    def __init__(self, config: GemNetConfig | None = None) -> None:
        super().__init__()
        config = config or GemNetConfig(variant=self.variant)
        if config.variant != self.variant:
            raise ValueError(
                f"config.variant is {config.variant!r} but {type(self).__name__} needs "
                f"{self.variant!r}; use build_model(config) to pick the class from the config"
            )
        self.config = c = config
        self.rbf_basis = BesselBasis(c.num_radial, c.cutoff, c.envelope_exponent)
        self.cbf_basis = SphericalBasis(c.num_spherical, c.num_radial, c.cutoff, c.envelope_exponent)
        # Down-projections of the bases, shared by all blocks.
        self.mlp_rbf3 = Dense(c.num_radial, c.emb_size_rbf)
        self.mlp_cbf3 = EfficientDownProjection(c.num_spherical, c.num_radial, c.emb_size_cbf)
        self.mlp_rbf_h = Dense(c.num_radial, c.emb_size_rbf)
        self.mlp_rbf_out = Dense(c.num_radial, c.emb_size_rbf)

        self.atom_embedding = AtomEmbedding(c.emb_size_atom, c.num_elements)
        self.edge_embedding = EdgeEmbedding(c.emb_size_atom, c.num_radial, c.emb_size_edge)
        self.interaction_blocks = torch.nn.ModuleList(self._interaction_block(c) for _ in range(c.num_blocks))
        self.output_blocks = torch.nn.ModuleList(
            OutputBlock(c.emb_size_atom, c.emb_size_edge, c.emb_size_rbf, c.num_atom) for _ in range(c.num_blocks + 1)
        )
        # Topology of the last call, reused while no pair crosses the cutoff (MD steps).
        self.graph_cache = GraphCache(c.cutoff)

    def _interaction_block(self, c: GemNetConfig) -> torch.nn.Module:
        raise NotImplementedError

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "GemNet":
        """Build a model from a named preset ("tiny", "small", "paper") with optional overrides."""
        return cls(preset_config(name, **{"variant": cls.variant, **overrides}))

    @property
    def dtype(self) -> torch.dtype:
        return self.atom_embedding.embeddings.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.atom_embedding.embeddings.weight.device

    def _check_inputs(self, data: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        z, pos = getattr(data, "z", None), getattr(data, "pos", None)
        if not isinstance(z, torch.Tensor) or not isinstance(pos, torch.Tensor):
            raise ValueError("data must carry tensors `z` (atomic numbers) and `pos` (positions, Å)")
        if pos.dim() != 2 or pos.shape[1] != 3:
            raise ValueError(f"data.pos must have shape (n_atoms, 3), got {tuple(pos.shape)}")
        if z.shape != (pos.shape[0],) or z.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"data.z must be integer with shape ({pos.shape[0]},), got {z.dtype} {tuple(z.shape)}")
        if z.numel() and (int(z.min()) < 1 or int(z.max()) > self.config.num_elements):
            raise ValueError(f"data.z must hold atomic numbers 1..{self.config.num_elements}, got {z.min()}..{z.max()}")
        return z.long().to(self.device), pos, getattr(data, "batch", None)

    def build_graph(self, positions: torch.Tensor, batch: torch.Tensor | None) -> MolecularGraph | QuadrupletGraph:
        """The topology this variant passes messages over (computed without gradients)."""
        return self.graph_cache(positions, batch)

    def _embed(
        self, z: torch.Tensor, positions: torch.Tensor, graph: MolecularGraph
    ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bases of the edges and triplets, the first atom/edge embeddings and their energies."""
        vectors, distances = edge_vectors(positions, graph)
        rbf = self.rbf_basis(distances)
        radial3 = self.cbf_basis.radial(distances)
        cbf3 = self.mlp_cbf3.neighbourhood_coefficients(
            radial3, vectors / distances[:, None], graph.neighbourhoods, self.cbf_basis.angular
        )
        bases = {
            "vectors": vectors,
            "radial3": radial3,
            "rbf": rbf,
            "rbf3": self.mlp_rbf3(rbf),
            "cbf3": cbf3,
            "rbf_h": self.mlp_rbf_h(rbf),
            "rbf_out": self.mlp_rbf_out(rbf),
        }
        h = self.atom_embedding(z)
        m = self.edge_embedding(h, rbf, graph.edge_src, graph.edge_dst)
        return bases, h, m, self.output_blocks[0](m, bases["rbf_out"], graph)

    def atomic_energies(self, z: torch.Tensor, positions: torch.Tensor, graph: Any) -> torch.Tensor:
        """Per-atom energies (eV), summed over the output blocks, without the reference shift.

        ``graph`` is what this variant's :meth:`build_graph` returns (a ``MolecularGraph`` for T, a
        ``QuadrupletGraph`` for Q), so each subclass narrows it.
        """
        raise NotImplementedError

    def forward(self, data: Any, compute_forces: bool = True) -> dict[str, torch.Tensor]:
        z, pos, batch = self._check_inputs(data)
        positions = pos.to(device=self.device, dtype=self.dtype)
        if batch is not None:
            batch = batch.to(self.device)
        graph = self.build_graph(positions, batch)
        with torch.enable_grad() if compute_forces else torch.no_grad():
            if compute_forces and not positions.requires_grad:
                positions = positions.detach().requires_grad_(True)
            atomic = self.atomic_energies(z, positions, graph)
            energy = scatter(atomic, graph.batch, dim=0, dim_size=graph.num_graphs, reduce="sum")
            result = {"energy": energy}
            if compute_forces:
                gradient = None
                if energy.requires_grad:  # False when no atom has a neighbour within the cutoff
                    (gradient,) = torch.autograd.grad(
                        energy.sum(), positions, create_graph=self.training, allow_unused=True
                    )
                result["forces"] = -gradient if gradient is not None else torch.zeros_like(positions)
        if not self.training and not pos.requires_grad:  # inference (MD): hold no autograd graph
            result = {key: value.detach() for key, value in result.items()}
        return result


class GemNetT(GemNet):
    """GemNet-T: triplet message passing (distances and angles), cutoff ``config.cutoff``."""

    variant = "T"

    def _interaction_block(self, c: GemNetConfig) -> InteractionBlock:
        return InteractionBlock(
            c.emb_size_atom,
            c.emb_size_edge,
            c.emb_size_trip,
            c.emb_size_rbf,
            c.emb_size_cbf,
            c.emb_size_bil_trip,
            c.num_before_skip,
            c.num_after_skip,
            c.num_concat,
            c.num_atom,
        )

    def atomic_energies(self, z: torch.Tensor, positions: torch.Tensor, graph: MolecularGraph) -> torch.Tensor:
        bases, h, m, energies = self._embed(z, positions, graph)
        for interaction, output in zip(self.interaction_blocks, self.output_blocks[1:]):
            h, m = interaction(h, m, bases["rbf3"], bases["cbf3"], bases["rbf_h"], graph)
            energies = energies + output(m, bases["rbf_out"], graph)
        return energies


class GemNetQ(GemNet):
    """GemNet-Q: GemNet-T plus quadruplet message passing over dihedral angles.

    Quadruplets c->a - b<-d join two edges within ``config.cutoff`` (5 Å in the reference) by an
    atom pair a-b within ``config.int_cutoff`` (10 Å). Their bases: radial of d_db; the 2D
    Fourier-Bessel basis of (d_ab, angle a-b-d), smooth at the interaction cutoff; and the 3D
    basis of (d_ca, angle c-a-b, dihedral c-a-b-d) with real spherical harmonics of all orders m.
    The dihedral is unsigned, as in the reference, so a mirror image has the same energy.
    Caveat inherited from the reference: the sin(m * dihedral) harmonics have a kink where a
    dihedral passes through 0 or 180 degrees, so forces (not energies) jump there.
    """

    variant = "Q"

    def __init__(self, config: GemNetConfig | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.cbf4_basis = SphericalBasis(c.num_spherical, c.num_radial, c.int_cutoff, c.envelope_exponent)
        self.sbf4_basis = TensorBasis(c.num_spherical, c.num_radial, c.cutoff, c.envelope_exponent)
        self.mlp_rbf4 = Dense(c.num_radial, c.emb_size_rbf)
        self.mlp_cbf4 = Dense(c.num_spherical * c.num_radial, c.emb_size_cbf)
        self.mlp_sbf4 = EfficientDownProjection(c.num_spherical**2, c.num_radial, c.emb_size_sbf)

    def _interaction_block(self, c: GemNetConfig) -> QuadrupletInteractionBlock:
        return QuadrupletInteractionBlock(
            c.emb_size_atom,
            c.emb_size_edge,
            c.emb_size_trip,
            c.emb_size_quad,
            c.emb_size_rbf,
            c.emb_size_cbf,
            c.emb_size_sbf,
            c.emb_size_bil_trip,
            c.emb_size_bil_quad,
            c.num_before_skip,
            c.num_after_skip,
            c.num_concat,
            c.num_atom,
        )

    def build_graph(self, positions: torch.Tensor, batch: torch.Tensor | None) -> QuadrupletGraph:
        return build_quadruplets(self.graph_cache(positions, batch), positions, self.config.int_cutoff)

    def atomic_energies(self, z: torch.Tensor, positions: torch.Tensor, graph: QuadrupletGraph) -> torch.Tensor:
        edges = graph.edges
        bases, h, m, energies = self._embed(z, positions, edges)
        d_ab, cos_abd, angle_cab, dihedral = quadruplet_geometry(positions, bases["vectors"], graph)
        rbf4 = self.mlp_rbf4(bases["rbf"])
        cbf4 = self.mlp_cbf4(self.cbf4_basis.full(d_ab, cos_abd, graph.db_int))
        # The 3D basis shares its radial part (edge c->a, same cutoff) with the triplet basis.
        sbf4 = self.mlp_sbf4.coefficients(
            self.sbf4_basis.repeat_orders(bases["radial3"]),
            self.sbf4_basis.angular(angle_cab, dihedral, graph.quad_ca),
            graph.quad_padding,
        )
        for interaction, output in zip(self.interaction_blocks, self.output_blocks[1:]):
            h, m = interaction(h, m, bases["rbf3"], bases["cbf3"], bases["rbf_h"], graph, rbf4, cbf4, sbf4)
            energies = energies + output(m, bases["rbf_out"], edges)
        return energies


MODEL_CLASSES: dict[str, type[GemNet]] = {"T": GemNetT, "Q": GemNetQ}


def build_model(variant: str | GemNetConfig = "T", preset: str | None = "tiny", **overrides: Any) -> GemNet:
    """A GemNet of ``variant`` ("T" or "Q") from a named preset, or rebuilt from a config.

    ``build_model("Q", "paper")`` is ``GemNetQ.from_preset("paper")``; ``build_model(config)``
    picks the class from ``config.variant`` (what ``load_model`` uses).
    """
    if isinstance(variant, GemNetConfig):
        if overrides:
            raise ValueError("build_model(config) takes no overrides; use dataclasses.replace on the config")
        return MODEL_CLASSES[variant.variant](variant)
    variant = str(variant).upper()
    if variant not in MODEL_CLASSES:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    if preset is None:
        return MODEL_CLASSES[variant](GemNetConfig.from_dict({"variant": variant, **overrides}))
    return MODEL_CLASSES[variant].from_preset(preset, **overrides)


def scale_factors(model: torch.nn.Module) -> dict[str, ScaleFactor]:
    """All scale factors of a model, keyed by module name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, ScaleFactor)}


@torch.no_grad()
def fit_scale_factors(model: GemNet, batch: Any) -> dict[str, float]:
    """Fit every ScaleFactor on one batch so that activations keep unit-variance-like scale.

    Each factor sets its value from the variance ratio of its reference input and its raw output
    as the forward pass reaches it, so later factors already see rescaled inputs: one pass gives
    the same result as fitting the factors one after another. Returns the fitted values.
    """
    factors = scale_factors(model)
    for factor in factors.values():
        factor.scale.fill_(1.0)
        factor.fitting = True
    try:
        model(batch, compute_forces=False)
    finally:
        for factor in factors.values():
            factor.fitting = False
    return {name: float(factor.scale) for name, factor in factors.items()}
