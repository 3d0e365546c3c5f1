// A small SVG of my neighbourhood in the mentoring graph: me in the middle, my
// mentors on the upper half of the first ring, my mentees on the lower half, and
// people two steps away on the outer ring. No library: a few dozen nodes at most.

const SVG = "http://www.w3.org/2000/svg";

function el(name, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

function spread(items, from, to) {
  // Angles evenly spread over [from, to] (radians), centred when there is one.
  if (items.length === 1) return [(from + to) / 2];
  return items.map((_, i) => from + ((to - from) * (i + 0.5)) / items.length);
}

export function drawGraph(container, graph, { me, labels = {} } = {}) {
  container.replaceChildren();
  const width = 560;
  const height = 440;
  const cx = width / 2;
  const cy = height / 2;
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "graph-svg" });
  const position = new Map();
  const centre = graph.nodes.find((n) => n.ring === 0);
  if (!centre) return;
  position.set(centre.id, [cx, cy]);

  const firstRing = graph.nodes.filter((n) => n.ring === 1);
  const mentors = firstRing.filter((n) => n.role === "mentor");
  const mentees = firstRing.filter((n) => n.role !== "mentor");
  // Mentors above (angles from 200° to 340°), mentees below (20° to 160°).
  spread(mentors, Math.PI * 1.1, Math.PI * 1.9).forEach((a, i) =>
    position.set(mentors[i].id, [cx + 160 * Math.cos(a), cy + 120 * Math.sin(a)]),
  );
  spread(mentees, Math.PI * 0.1, Math.PI * 0.9).forEach((a, i) =>
    position.set(mentees[i].id, [cx + 160 * Math.cos(a), cy + 120 * Math.sin(a)]),
  );
  const outer = graph.nodes.filter((n) => n.ring === 2);
  spread(outer, 0, Math.PI * 2).forEach((a, i) =>
    position.set(outer[i].id, [cx + 250 * Math.cos(a), cy + 195 * Math.sin(a)]),
  );

  const edges = el("g", { class: "edges" });
  for (const edge of graph.edges) {
    const a = position.get(edge.source);
    const b = position.get(edge.target);
    if (!a || !b) continue;
    const line = el("line", {
      x1: a[0], y1: a[1], x2: b[0], y2: b[1],
      class: `edge edge-${edge.state}`,
    });
    line.append(el("title", {}, edge.state === "requested" ? labels.pending || "…" : ""));
    edges.append(line);
  }
  svg.append(edges);

  const nodes = el("g", { class: "nodes" });
  for (const node of graph.nodes) {
    const p = position.get(node.id);
    if (!p) continue;
    const group = el("g", {
      class: `node level-${node.level} ring-${node.ring}${node.id === me ? " me" : ""}`,
      transform: `translate(${p[0].toFixed(1)} ${p[1].toFixed(1)})`,
      "data-user": node.id,
    });
    group.append(el("circle", { r: node.ring === 0 ? 16 : node.ring === 1 ? 12 : 7 }));
    group.append(el("title", {}, `${node.name} — ${node.facility} (${labels.levels?.[node.level] || node.level})`));
    if (node.ring < 2) {
      const short = node.name.length > 20 ? `${node.name.slice(0, 19)}…` : node.name;
      group.append(el("text", { y: node.ring === 0 ? 36 : 30, "text-anchor": "middle" }, short));
    }
    nodes.append(group);
  }
  svg.append(nodes);
  container.append(svg);
}
