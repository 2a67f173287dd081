"""The derived architecture as a picture, plots/cell.png: graphviz's `dot` renders the graph where
it is installed, and otherwise matplotlib draws it, so the picture always exists.

The matplotlib drawing is a layered one that fits every space's graph (enas/spaces/graph.py):
each node sits one layer after the deepest node it reads (the longest path from an input), the
nodes of a layer are ordered by where their inputs sit, and an edge that skips layers bends
so that it does not run through the nodes between. Each cluster (a micro architecture's normal
and reduction cells) is a panel of its own.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from enas.folder.atomic import write_file
from enas.report.plots import DPI, save
from enas.spaces.graph import Edge, Graph, Node

INCH_PER_CHAR = 0.075   # the width of a character of the node labels (8 points)
LABEL_AT = 0.62         # where along an edge its label sits


def write_cell(graph: Graph, path: Path, title: str) -> Path:
    """The picture of `graph` under `title`, through graphviz where it works, else matplotlib."""
    if shutil.which("dot"):
        done = subprocess.run(["dot", "-Tpng", f"-Gdpi={DPI}"], input=graph.dot(title).encode(), capture_output=True,
                              check=False, timeout=60)
        if done.returncode == 0 and done.stdout:
            write_file(path, lambda handle: handle.write(done.stdout))
            return path
    return save(draw_graph(graph, title), path)


@dataclass(frozen=True)
class Layout:
    """Where the nodes of one cluster sit, in inches, and how much each edge bends (arc3's rad)."""

    nodes: list[Node]
    edges: list[Edge]
    at: dict[str, tuple[float, float]]
    bends: list[float]

    def point(self, number: int, t: float) -> tuple[float, float]:
        """The point at `t` (0 at the source, 1 at the target) of edge `number`: a quadratic Bezier
        curve whose control point arc3 puts rad * length off the middle of the line."""
        edge, bend = self.edges[number], self.bends[number]
        (x1, y1), (x2, y2) = self.at[edge.source], self.at[edge.target]
        cx, cy = (x1 + x2) / 2 + bend * (y2 - y1), (y1 + y2) / 2 - bend * (x2 - x1)
        return ((1 - t) ** 2 * x1 + 2 * t * (1 - t) * cx + t ** 2 * x2,
                (1 - t) ** 2 * y1 + 2 * t * (1 - t) * cy + t ** 2 * y2)

    def extent(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) of the nodes and the edges' middles (an arc's furthest point)."""
        points = [*self.at.values(), *(self.point(i, 0.5) for i in range(len(self.edges)))]
        xs, ys = [x for x, _ in points], [y for _, y in points]
        return min(xs) - 0.9, max(xs) + 0.9, min(ys) - 0.6, max(ys) + 0.6


def draw_graph(graph: Graph, title: str) -> Figure:
    """A matplotlib figure of `graph`: one panel per cluster, side by side when the data flows up
    or down, stacked when it flows across."""
    layouts = [layout(graph, cluster) for cluster in graph.clusters()]
    extents = [lay.extent() for lay in layouts]
    across = graph.direction == "LR"
    widths, heights = [r - l for l, r, _, _ in extents], [t - b + 0.4 for _, _, b, t in extents]
    width = max(widths) if across else sum(widths)
    height = sum(heights) if across else max(heights)
    figure = Figure(figsize=(min(max(width, 4.0), 24.0), min(height + 0.5, 24.0)), layout="constrained")
    panels = figure.subplots(len(layouts) if across else 1, 1 if across else len(layouts), squeeze=False).flatten()
    figure.suptitle(title, fontsize="medium")
    for axes, lay, cluster in zip(panels, layouts, graph.clusters()):
        draw_layout(axes, lay)
        axes.set_title(cluster, fontsize="small")
    return figure


def layout(graph: Graph, cluster: str) -> Layout:
    """The layered positions of the nodes of `cluster`."""
    nodes = [node for node in graph.nodes if node.cluster == cluster]
    keys = {node.key for node in nodes}
    edges = [edge for edge in graph.edges if edge.source in keys and edge.target in keys]
    inputs: dict[str, list[str]] = {node.key: [] for node in nodes}
    for edge in edges:
        inputs[edge.target].append(edge.source)
    layer: dict[str, int] = {}
    while len(layer) < len(nodes):   # longest path from an input, in topological order
        ready = [n.key for n in nodes if n.key not in layer and all(s in layer for s in inputs[n.key])]
        if not ready:
            raise ValueError(f"graph {graph.name} has a cycle")
        for key in ready:
            layer[key] = 1 + max((layer[s] for s in inputs[key]), default=-1)
    slot: dict[str, float] = {}
    for depth in range(max(layer.values()) + 1):
        members = [n.key for n in nodes if layer[n.key] == depth]
        # barycentre ordering: under the mean slot of a node's inputs (stable for ties)
        members.sort(key=lambda key: sum(slot[s] for s in inputs[key]) / len(inputs[key]) if inputs[key] else 0.0)
        for i, key in enumerate(members):
            slot[key] = i - (len(members) - 1) / 2
    widest = max(len(node.label) for node in nodes) * INCH_PER_CHAR + 0.5
    labelled = any(edge.label for edge in edges)
    if graph.direction == "LR":
        gap = widest + (1.4 if labelled else 0.6)
        at = {key: (layer[key] * gap, -slot[key] * 0.9) for key in layer}
    else:
        sign = -1.0 if graph.direction == "TB" else 1.0
        at = {key: (slot[key] * max(widest + 0.3, 1.0), sign * layer[key] * (1.3 if labelled else 0.9))
              for key in layer}
    return Layout(nodes, edges, at, bends(edges, layer))


def bends(edges: list[Edge], layer: dict[str, int]) -> list[float]:
    """Straight edges between neighbouring layers; a bend for an edge that skips layers and for
    the second of a pair (a micro node that reads one input twice). On a chain (one node a layer:
    macro) every skip bends to the same side, so that the longer a skip the wider its arc."""
    chain = len(set(layer.values())) == len(layer)
    seen: Counter[tuple[str, str]] = Counter()
    out = []
    for number, edge in enumerate(edges):
        span, repeat = layer[edge.target] - layer[edge.source], seen[edge.source, edge.target]
        seen[edge.source, edge.target] += 1
        if span == 1 and not repeat:
            out.append(0.0)
        else:
            out.append(-0.25 if chain else (0.3 if (number + repeat) % 2 else -0.3) / span ** 0.5)
    return out


def draw_layout(axes: Axes, lay: Layout) -> None:
    texts = {}
    for node in lay.nodes:
        x, y = lay.at[node.key]
        style = "square,pad=0.35" if node.terminal else "round,pad=0.35"
        colour = "#dde8f5" if node.terminal else "#fff2cc"
        texts[node.key] = axes.text(x, y, node.label, ha="center", va="center", fontsize=8, zorder=3,
                                    bbox={"boxstyle": style, "facecolor": colour, "edgecolor": "#555555"})
    for number, (edge, bend) in enumerate(zip(lay.edges, lay.bends)):
        axes.annotate("", xy=lay.at[edge.target], xytext=lay.at[edge.source], zorder=2, arrowprops={
            "arrowstyle": "-|>", "color": "#444444", "linewidth": 0.9, "linestyle": "--" if edge.dashed else "-",
            "connectionstyle": f"arc3,rad={bend}", "shrinkA": 1, "shrinkB": 1,
            "patchA": texts[edge.source].get_bbox_patch(), "patchB": texts[edge.target].get_bbox_patch()})
        if edge.label:   # past the middle: edges that cross there keep their labels apart
            axes.text(*lay.point(number, LABEL_AT), edge.label, ha="center", va="center", fontsize=6.5, zorder=4,
                      color="#1f3b73", bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none",
                                             "alpha": 0.85})
    left, right, bottom, top = lay.extent()
    axes.set_xlim(left, right)
    axes.set_ylim(bottom, top)
    axes.set_aspect("equal", adjustable="box")
    axes.axis("off")
