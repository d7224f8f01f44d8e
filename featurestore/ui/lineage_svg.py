"""A lineage graph drawn as SVG on the server: columns by kind, nodes as links.

Why server-side SVG rather than a JavaScript graph library: the graphs are small (tens of
nodes), their flow is one way (files -> ingestion runs -> views -> services, training sets
and materialization runs), so a layered layout in a few dozen lines of Python draws them
well; nothing is vendored, nothing runs in the browser, the page works with scripts off
(each node is an ``<a>``), and its text is escaped like every other page. The browser pans
it by scrolling (console.js adds dragging).

Features are folded into their view (a service or training set "uses N features" of it):
one node per feature would make a view's column dozens of rows tall.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from html import escape
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

NODE_W, NODE_H = 210, 38
COL_GAP, ROW_GAP, MARGIN = 80, 14, 20
COLUMNS = ("files", "ingestion", "views", "consumers")
COLORS = {
    "source_file": "#eef6ee",
    "run": "#eef2fb",
    "push": "#eef2fb",
    "feature_view": "#fff4d6",
    "feature_service": "#f3e8fd",
    "training_set": "#e6f4f1",
}
BAD_STATUS = {"failed", "interrupted", "removed", "changed"}


@dataclass
class Box:
    id: str
    kind: str
    label: str
    detail: str
    column: int
    status: str | None
    x: float = 0
    y: float = 0


def fold_features(graph: dict[str, Any]) -> tuple[str, list[dict[str, Any]], list[tuple[str, str, str]]]:
    """The graph with each feature folded into its view: (root, nodes, edges as (from, to, label))."""
    view_of = {e["to"]: e["from"] for e in graph["edges"] if e["relation"] == "has"}
    for n in graph["nodes"]:  # a feature whose view is outside the graph: by its name
        if n["kind"] == "feature" and n["id"] not in view_of:
            view_of[n["id"]] = "view:" + str(n["name"]).split(":", 1)[0]
    nodes = {n["id"]: n for n in graph["nodes"] if n["kind"] != "feature"}
    counts: dict[tuple[str, str], int] = defaultdict(int)
    labels: dict[tuple[str, str], str] = {}
    for e in graph["edges"]:
        if e["relation"] == "has":
            continue
        a, b = view_of.get(e["from"], e["from"]), view_of.get(e["to"], e["to"])
        if a == b or a not in nodes or b not in nodes:
            continue
        folded = e["from"] in view_of or e["to"] in view_of
        counts[(a, b)] += 1 if folded else 0
        labels.setdefault((a, b), str(e["relation"]).split(" (")[0])
    edges = [
        (a, b, f"{n} feature{'s' if n != 1 else ''}" if n else labels[(a, b)])
        for (a, b), n in sorted(counts.items())
    ]
    root = view_of.get(graph["root"], graph["root"])
    return root, list(nodes.values()), edges


def column_of(node: dict[str, Any]) -> int:
    kind = node["kind"]
    if kind == "source_file":
        return 0
    if kind == "push" or (kind == "run" and node.get("run_type") == "ingest"):
        return 1
    if kind == "feature_view":
        return 2
    return 3  # services, training sets, materialization runs


def label_of(node: dict[str, Any]) -> tuple[str, str]:
    """A short label and a second line (the kind, a status, a row count)."""
    kind, name = node["kind"], str(node["name"])
    if kind == "source_file":
        path = PurePosixPath(name)
        return f"{path.parent.name}/{path.name}", f"file · {node.get('status', '')}".rstrip(" ·")
    if kind in ("run", "push"):
        return name, str(node.get("status") or kind)
    if kind == "training_set":
        return f"training set {name}", f"{node.get('rows') or '?'} rows"
    return name, kind.replace("_", " ") + (" · online" if node.get("online") else "")


def layout(root: str, nodes: list[dict[str, Any]], edges: list[tuple[str, str, str]]) -> list[Box]:
    """Boxes in columns by kind; within a column ordered by their upstream neighbours' rows."""
    boxes = {}
    for n in nodes:
        label, detail = label_of(n)
        boxes[n["id"]] = Box(n["id"], n["kind"], label, detail, column_of(n), n.get("status"))
    upstream: dict[str, list[str]] = defaultdict(list)
    for a, b, _ in edges:
        upstream[b].append(a)
    columns: list[list[Box]] = [[] for _ in COLUMNS]
    for box in sorted(boxes.values(), key=lambda b: b.label):
        columns[box.column].append(box)
    rank: dict[str, float] = {}
    for i, column in enumerate(columns):
        if i:  # barycenter: the mean row of the nodes that feed it, so edges cross less
            column.sort(key=lambda b: _mean([rank[u] for u in upstream[b.id] if u in rank], len(column)))
        for row, box in enumerate(column):
            rank[box.id] = row
            box.x = MARGIN + i * (NODE_W + COL_GAP)
            box.y = MARGIN + 24 + row * (NODE_H + ROW_GAP)
    return [b for column in columns for b in column]


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def render(root: str, nodes: list[dict[str, Any]], edges: list[tuple[str, str, str]], base: str) -> str:
    """A folded graph (``fold_features``) as an inline SVG element whose nodes link to their own
    lineage pages."""
    boxes = layout(root, nodes, edges)
    by_id = {b.id: b for b in boxes}
    width = MARGIN * 2 + len(COLUMNS) * NODE_W + (len(COLUMNS) - 1) * COL_GAP
    height = MARGIN * 2 + 24 + max((b.y for b in boxes), default=0) + NODE_H
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
        f'viewBox="0 0 {width} {height:.0f}" role="img" aria-label="lineage graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#8a94a6"/></marker></defs>',
    ]
    for i, title in enumerate(
        ("source files", "ingestion runs", "feature views", "services, training sets, runs")
    ):
        out.append(
            f'<text x="{MARGIN + i * (NODE_W + COL_GAP)}" y="{MARGIN + 8}" fill="#6b7280">{title}</text>'
        )
    for a, b, label in edges:
        s, t = by_id[a], by_id[b]
        x1, y1, x2, y2 = s.x + NODE_W, s.y + NODE_H / 2, t.x, t.y + NODE_H / 2
        if x2 <= x1:  # same column (an ingestion feeding a materialization is not): a side loop
            x2, y2 = t.x + NODE_W, t.y + NODE_H / 2
        bend = max(40.0, abs(x2 - x1) / 2)
        curve = f"M {x1:.0f} {y1:.0f} C {x1 + bend:.0f} {y1:.0f}, {x2 - bend:.0f} {y2:.0f}, {x2:.0f} {y2:.0f}"
        out.append(
            f'<path class="edge" data-from="{escape(a)}" data-to="{escape(b)}" d="{curve}" '
            f'fill="none" stroke="#8a94a6" stroke-width="1.2" marker-end="url(#arrow)">'
            f"<title>{escape(label)}</title></path>"
        )
    for box in boxes:
        href = f"{base}/lineage?node={quote(box.id, safe='')}"
        stroke = "#b42318" if box.status in BAD_STATUS else ("#2457c5" if box.id == root else "#9aa3b2")
        width_px = 2.5 if box.id == root or box.status in BAD_STATUS else 1
        out.append(
            f'<a href="{escape(href)}" data-node="{escape(box.id)}" class="node {escape(box.kind)}">'
            f"<title>{escape(box.id)}</title>"
            f'<rect x="{box.x:.0f}" y="{box.y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="5" '
            f'fill="{COLORS.get(box.kind, "#fff")}" stroke="{stroke}" stroke-width="{width_px}"/>'
            f'<text x="{box.x + 8:.0f}" y="{box.y + 15:.0f}" font-weight="600">'
            f"{escape(_clip(box.label))}</text>"
            f'<text x="{box.x + 8:.0f}" y="{box.y + 31:.0f}" fill="#6b7280">'
            f"{escape(_clip(box.detail))}</text></a>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _clip(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
