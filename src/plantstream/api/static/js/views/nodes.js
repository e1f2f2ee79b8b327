// A facility's Sparkplug B edge nodes and devices: live, or stale since their death
// certificate (NDEATH/DDEATH) until they are born again; each row links to its machine.

import { get } from "../api.js";
import { fullTime, h, hashLink, localTime, replace } from "../dom.js";

const POLL_MS = 5000;

function when(ms) {
  if (!ms) return "";
  const iso = new Date(ms).toISOString();
  return h("time", { datetime: iso, title: fullTime(iso) }, localTime(iso));
}

function signalList(signals) {
  const names = Object.keys(signals).sort();
  const shown = names.slice(0, 8).map((name) => {
    const s = signals[name];
    const unit = (s.properties && (s.properties.engUnit || s.properties.units)) || "";
    return h("span", { class: "signal-tag", title: `${s.type}${unit ? ` · ${unit}` : ""}` }, name);
  });
  const more = names.length > 8 ? h("small", { class: "muted" }, ` +${names.length - 8}`) : null;
  return [shown, more];
}

function row(facility, node) {
  const stale = node.stale;
  return h(
    "tr",
    { class: `node-row${stale ? " stale" : ""}`, dataset: { node: node.node, stale: String(stale) } },
    h("td", {}, h("code", {}, node.node)),
    h(
      "td",
      { class: "node-state" },
      h("span", { class: `badge ${stale ? "alarm" : "ok"}` }, stale ? "stale" : "online"),
    ),
    h("td", {}, h("a", { href: hashLink("facility", facility, "device", node.machine) }, node.machine)),
    h("td", {}, when(node.birth_ms)),
    h("td", { class: stale ? "stale-text" : "" }, stale ? when(node.death_ms) : ""),
    h("td", { class: "signals" }, signalList(node.signals)),
  );
}

export async function nodesView(ctx) {
  const [facility] = ctx.params;
  ctx.nav(facility, "nodes");
  const summary = h("p", { class: "muted", id: "nodes-summary" });
  const tbody = h("tbody");
  const empty = h(
    "div",
    { class: "panel empty", hidden: true },
    "No Sparkplug B edge node of this facility has sent a birth certificate yet.",
  );
  replace(
    ctx.main,
    h("div", { class: "page-head" }, h("h1", { class: "page-title" }, `Edge nodes · ${facility}`)),
    summary,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "nodes", id: "nodes-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Node / device", "State", "Machine", "Born", "Died", "Signals"].map((t) => h("th", { scope: "col" }, t)),
          ),
        ),
        tbody,
      ),
    ),
    empty,
  );
  await ctx.poll(async () => {
    const answer = await get.sparkplugNodes(facility, { signal: ctx.signal });
    if (!ctx.active) return;
    // stale first: what needs someone's attention
    const nodes = [...answer.nodes].sort((a, b) => Number(b.stale) - Number(a.stale) || a.node.localeCompare(b.node));
    const stale = nodes.filter((n) => n.stale).length;
    summary.textContent = `${nodes.length} nodes and devices, ${stale} stale`;
    replace(tbody, nodes.map((n) => row(facility, n)));
    empty.hidden = nodes.length > 0;
  }, POLL_MS);
}
