"""An architecture as a graph of labelled nodes and edges: what a space's `render` returns, and
what both pictures of it read, graphviz's dot text (`Graph.dot`) and the matplotlib drawing
(enas/report/cell_drawing.py)."""

from __future__ import annotations

from dataclasses import dataclass

DIRECTIONS = ("LR", "TB", "BT")   # the way the data flows: left to right, top to bottom, bottom to top


@dataclass(frozen=True)
class Node:
    key: str                 # a dot identifier, unique in its graph
    label: str
    terminal: bool = False   # an input or output of the cell or network (drawn as a box)
    cluster: str = ""        # the part of the picture it belongs to (e.g. "normal cell"); "" for none


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""
    dashed: bool = False


@dataclass(frozen=True)
class Graph:
    name: str
    direction: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def __post_init__(self) -> None:
        keys = [node.key for node in self.nodes]
        if self.direction not in DIRECTIONS or len(set(keys)) != len(keys):
            raise ValueError(f"graph {self.name}: direction {self.direction!r}, node keys {keys}")
        unknown = {key for edge in self.edges for key in (edge.source, edge.target)} - set(keys)
        if unknown:
            raise ValueError(f"graph {self.name}: edges name unknown nodes {sorted(unknown)}")

    def clusters(self) -> list[str]:
        """The clusters in the order their first node appears ("" for the nodes in none)."""
        return list(dict.fromkeys(node.cluster for node in self.nodes))

    def dot(self, title: str = "") -> str:
        """The graph in graphviz's dot language, a subgraph per cluster, `title` on top."""
        cluster_of = {node.key: node.cluster for node in self.nodes}
        lines = [f"digraph {self.name} {{", f"  rankdir={self.direction};"]
        if title:
            lines.append(f'  label="{title}"; labelloc=t;')
        for number, cluster in enumerate(self.clusters()):
            indent = "    " if cluster else "  "
            if cluster:
                lines += [f"  subgraph cluster_{number} {{", f'    label="{cluster}";']
            lines += [indent + _dot_node(node) for node in self.nodes if node.cluster == cluster]
            lines += [indent + _dot_edge(edge) for edge in self.edges
                      if cluster_of[edge.source] == cluster_of[edge.target] == cluster]
            if cluster:
                lines.append("  }")
        lines += ["  " + _dot_edge(edge) for edge in self.edges if cluster_of[edge.source] != cluster_of[edge.target]]
        return "\n".join(lines + ["}"]) + "\n"


def _dot_node(node: Node) -> str:
    return f'{node.key} [label="{node.label}"{", shape=box" if node.terminal else ""}];'


def _dot_edge(edge: Edge) -> str:
    attributes = ([f'label="{edge.label}"'] if edge.label else []) + (["style=dashed"] if edge.dashed else [])
    return f"{edge.source} -> {edge.target}" + (f" [{', '.join(attributes)}]" if attributes else "") + ";"
