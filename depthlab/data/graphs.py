"""Graph data for node classification: a contextual stochastic block model, the karate club, and
a user's ``.npz`` graph.

A graph dataset is a ``RawData`` with ``edge_index`` (2×E integers, source row first) besides
``x`` (N×F node features) and ``y`` (N labels), and optional boolean node masks ``train``,
``val``, ``test``. ``load_data`` checks it (:func:`check_graph`), makes the edges undirected
without self-loops, splits the nodes (the given masks, else a random split by ``seed``) and
standardises the features on the training nodes.
"""

from __future__ import annotations

import numpy as np
import torch

from depthlab.data.base import RawData, register_dataset
from depthlab.exceptions import DataError
from depthlab.spec import DataSpec

MASKS = ("train_mask", "val_mask", "test_mask")


@register_dataset(
    "csbm",
    "contextual stochastic block model: n_samples nodes, n_classes blocks, edge homophily "
    "`homophily`, mean degree `degree`, Gaussian features with class means `signal` apart",
)
def csbm(spec: DataSpec) -> RawData:
    """A contextual stochastic block model (Deshpande et al. 2018) with a set edge homophily.

    Labels are balanced and in random node order. Each of round(N·degree/2) undirected edges
    joins two distinct nodes of one class with probability ``homophily`` (the class drawn in
    proportion to its number of node pairs), else two nodes of different classes; repeated
    edges are drawn again, so the realised edge homophily is ``homophily`` up to sampling noise
    (binomial, ±√(h(1−h)/E)). Features: x_i = μ_{y_i} + ε_i, ε_i ~ N(0, I_F), with class means
    of norm ``signal``/√2 on orthogonal directions (``n_features ≥ n_classes``), so any two are
    ``signal`` apart; otherwise random directions of the same norm.
    """
    rng = np.random.default_rng(spec.seed)
    n = spec.n_samples or 1000
    c = spec.n_classes
    if n < 2 * c:
        raise DataError(f"csbm: n_samples {n} is too few for {c} classes; give >= {2 * c}")
    y = rng.permutation(np.arange(n) % c).astype(np.int64)
    members = [np.flatnonzero(y == k) for k in range(c)]
    sizes = np.array([len(m) for m in members], dtype=np.float64)
    pair_weight = sizes * (sizes - 1)
    n_edges = max(1, int(round(n * spec.degree / 2)))
    max_edges = n * (n - 1) // 2
    if n_edges > max_edges // 2:
        raise DataError(f"csbm: degree {spec.degree} is too dense for {n} nodes")
    keys = np.zeros(0, dtype=np.int64)
    while len(keys) < n_edges:
        k = 2 * (n_edges - len(keys))
        u, v = _draw_pairs(rng, k, y, members, pair_weight, spec.homophily)
        new = np.minimum(u, v) * n + np.maximum(u, v)
        # keep first draws in order (np.unique sorts): the edge set does not depend on ties
        merged = np.concatenate([keys, new])
        _, first = np.unique(merged, return_index=True)
        keys = merged[np.sort(first)][:n_edges]
    e = np.stack([keys // n, keys % n])
    means = _class_means(rng, c, spec.n_features) * spec.signal / np.sqrt(2.0)
    x = means[y] + rng.standard_normal((n, spec.n_features))
    return RawData(x, y, source="csbm", edge_index=np.concatenate([e, e[::-1]], axis=1))


def _draw_pairs(
    rng: np.random.Generator,
    k: int,
    y: np.ndarray,
    members: list[np.ndarray],
    pair_weight: np.ndarray,
    homophily: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``k`` node pairs: same class with probability ``homophily``, else different classes."""
    c = len(members)
    sizes = np.array([len(m) for m in members])
    same = rng.random(k) < homophily
    cls = rng.choice(c, size=k, p=pair_weight / pair_weight.sum())
    i = rng.integers(0, sizes[cls])
    j = rng.integers(0, sizes[cls] - 1)
    j = j + (j >= i)  # a second, distinct member of the same class
    offsets = np.cumsum(np.concatenate([[0], sizes]))[:-1]
    order = np.concatenate(members)
    same_u, same_v = order[offsets[cls] + i], order[offsets[cls] + j]
    diff_u = rng.integers(0, len(y), size=k)
    other = (y[diff_u] + rng.integers(1, c, size=k)) % c
    diff_v = order[offsets[other] + rng.integers(0, sizes[other])]
    return np.where(same, same_u, diff_u), np.where(same, same_v, diff_v)


def _class_means(rng: np.random.Generator, c: int, f: int) -> np.ndarray:
    """``c`` unit vectors in R^f: orthonormal when f ≥ c, else random directions."""
    g = rng.standard_normal((f, c))
    if f >= c:
        q, _ = np.linalg.qr(g)
        return q.T
    return (g / np.linalg.norm(g, axis=0)).T


@register_dataset(
    "karate", "Zachary's karate club: 34 nodes, 78 edges, 4 communities, one-hot node features"
)
def karate(spec: DataSpec) -> RawData:
    """The karate club as PyG ships it (no download): identity features, 4 community labels."""
    from torch_geometric.datasets import KarateClub

    g = KarateClub()[0]
    return RawData(
        g.x.numpy().astype(np.float64),
        g.y.numpy().astype(np.int64),
        source="karate",
        edge_index=g.edge_index.numpy(),
    )


def check_graph(
    x: np.ndarray,
    y: np.ndarray,
    edge_index: np.ndarray,
    masks: dict[str, np.ndarray],
    source: str,
) -> None:
    """Shapes, integer in-range edges, boolean node masks; a ``DataError`` naming the array."""
    if x.ndim != 2:
        raise DataError(f"{source}: x must have shape (nodes, features), got {x.shape}")
    n = len(x)
    if y.shape[:1] != (n,):
        raise DataError(f"{source}: y has shape {y.shape}; expected one label per node ({n},)")
    if edge_index.ndim != 2 or edge_index.shape[0] != 2:
        raise DataError(f"{source}: edge_index must have shape (2, E), got {edge_index.shape}")
    if not np.issubdtype(edge_index.dtype, np.integer):
        raise DataError(f"{source}: edge_index holds {edge_index.dtype} values; expected integers")
    if edge_index.size:
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise DataError(
                f"{source}: edge_index holds node index {bad}, out of range for {n} nodes "
                f"(x has {n} rows; indices run 0..{n - 1})"
            )
    for name, mask in masks.items():
        if mask.dtype != np.bool_ or mask.shape != (n,):
            raise DataError(
                f"{source}: {name} must be a boolean array of shape ({n},), "
                f"got {mask.dtype} {mask.shape}"
            )
    if masks and "train_mask" not in masks:
        raise DataError(f"{source}: {', '.join(masks)} given without train_mask; give all three")
    if "train_mask" in masks and not masks["train_mask"].any():
        raise DataError(f"{source}: train_mask selects no node")


def node_masks(
    n: int, given: dict[str, np.ndarray], spec: DataSpec, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The given masks (absent val/test: empty), or a random split of the nodes by ``seed``."""
    if given:
        return {
            p: given.get(f"{p}_mask", np.zeros(n, dtype=bool)) for p in ("train", "val", "test")
        }
    order = rng.permutation(n)
    n_test = int(round(spec.test_fraction * n))
    n_val = min(int(round(spec.val_fraction * n)), n - n_test - 1)
    masks = {p: np.zeros(n, dtype=bool) for p in ("train", "val", "test")}
    masks["test"][order[:n_test]] = True
    masks["val"][order[n_test : n_test + n_val]] = True
    masks["train"][order[n_test + n_val :]] = True
    return masks


def undirected(edge_index: np.ndarray, n: int) -> torch.Tensor:
    """Both directions of every edge, no self-loops, no repeats, sorted (PyG's utilities)."""
    from torch_geometric.utils import remove_self_loops, to_undirected

    e = torch.from_numpy(np.ascontiguousarray(edge_index, dtype=np.int64))
    e, _ = remove_self_loops(e)
    return to_undirected(e, num_nodes=n)


def read_graph_extras(z: np.lib.npyio.NpzFile) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """``edge_index`` and the node masks of an open ``.npz`` (None and {} when absent)."""
    edge_index = np.asarray(z["edge_index"]) if "edge_index" in z.files else None
    masks = {k: np.asarray(z[k]) for k in MASKS if k in z.files}
    return edge_index, masks
