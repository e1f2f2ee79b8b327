// A facility's machines by place: the hierarchy (facility -> area -> line), a search box,
// filters (area, line, type, state, silent, alerting) and one page of cards at a time, so a
// plant of thousands of machines renders a page, not all of them.

import { get } from "../api.js";
import { age, fullTime, h, hashLink, replace } from "../dom.js";

const POLL_MS = 5000;
const PAGE_SIZE = 48;
const SEARCH_DELAY_MS = 250;
const FILTERS = ["q", "area", "line", "type", "state", "silent", "alerting", "page"];

export function machinesLink(facility, params = {}) {
  const search = new URLSearchParams();
  for (const name of FILTERS) if (params[name]) search.set(name, params[name]);
  const text = search.toString();
  return `${hashLink("machines", facility)}${text ? `?${text}` : ""}`;
}

function filtersOf(search) {
  const out = {};
  for (const name of FILTERS) out[name] = search.get(name) || "";
  out.page = Math.max(1, parseInt(out.page, 10) || 1);
  return out;
}

function select(name, label, options, value, onchange) {
  return h(
    "label",
    { class: "filter" },
    h("span", {}, label),
    h(
      "select",
      { id: `filter-${name}`, "data-filter": name, onchange },
      h("option", { value: "" }, "All"),
      options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
    ),
  );
}

function tree(facility, assets, filters) {
  const link = (params, text, count, active) =>
    h(
      "a",
      { href: machinesLink(facility, params), class: `tree-link${active ? " active" : ""}`, title: text },
      h("span", { class: "tree-name" }, text),
      count === null ? null : h("span", { class: "muted tree-count" }, count),
    );
  const lineItem = (line) =>
    h(
      "li",
      { dataset: { line: line.id } },
      link({ area: line.area || "", line: line.id }, line.name || line.id, line.machine_count, filters.line === line.id),
    );
  return h(
    "nav",
    { class: "tree panel", "aria-label": "Plant hierarchy" },
    link({}, facility, assets.machine_total, !filters.area && !filters.line),
    h(
      "ul",
      {},
      assets.areas.map((area) =>
        h(
          "li",
          { dataset: { area: area.id } },
          link({ area: area.id }, area.name || area.id, null, filters.area === area.id && !filters.line),
          h("ul", {}, area.lines.map(lineItem)),
        ),
      ),
      assets.lines.map(lineItem),
    ),
  );
}

function machineCard(facility, m) {
  const place = [m.area, m.line].filter(Boolean).join(" / ") || (m.placed ? "facility" : "unplaced");
  return h(
    "article",
    { class: `card machine-card state-${m.state}`, dataset: { machine: m.id, state: m.state } },
    h(
      "header",
      { class: "card-head" },
      h("a", { class: "device-link machine-id", href: hashLink("facility", facility, "device", m.id), title: m.id }, m.id),
      h("span", { class: `badge machine-state ${m.state}` }, m.state),
    ),
    m.name ? h("div", { class: "machine-name", title: m.name }, m.name) : null,
    h(
      "div",
      { class: "machine-meta muted" },
      h("span", { class: "machine-type", title: m.type || "" }, m.type || "no type"),
      h("span", { class: "machine-place", title: place }, place),
    ),
    h(
      "div",
      { class: "machine-foot muted", title: m.last_seen ? fullTime(m.last_seen) : "" },
      m.last_seen ? `last reading ${age(m.last_seen)}` : "no reading yet",
      m.open_alerts ? h("a", { class: "badge alarm", href: hashLink("alerts", facility) }, `${m.open_alerts} open`) : null,
    ),
  );
}

export async function machinesView(ctx) {
  const [facility] = ctx.params;
  const filters = filtersOf(ctx.search);
  ctx.nav(facility, "machines");
  const assets = await get.assets(facility, { machines: false }, { signal: ctx.signal });
  if (!ctx.active) return;
  const go = (changes) => {
    location.hash = machinesLink(facility, { ...filters, ...changes, page: changes.page || "" });
  };
  const onSelect = (name) => (event) => go({ [name]: event.target.value });
  const lines = [...assets.areas.flatMap((a) => a.lines), ...assets.lines].filter(
    (l) => !filters.area || l.area === filters.area,
  );
  let timer = null;
  const searchBox = h("input", {
    id: "machine-search",
    type: "search",
    placeholder: "Search id or name",
    value: filters.q,
    maxlength: 64,
    "aria-label": "Search machines",
    oninput: (event) => {
      clearTimeout(timer);
      timer = setTimeout(() => go({ q: event.target.value.trim() }), SEARCH_DELAY_MS);
    },
  });
  const check = (name, label) =>
    h(
      "label",
      { class: "filter check" },
      h("input", { type: "checkbox", id: `filter-${name}`, checked: filters[name] === "true", onchange: (e) => go({ [name]: e.target.checked ? "true" : "" }) }),
      label,
    );
  const count = h("div", { class: "muted", id: "machine-total", "aria-live": "polite" });
  const grid = h("div", { class: "grid machines", id: "machine-grid" });
  const pager = h("div", { class: "pager", id: "pager" });
  const crumbs = [h("a", { href: machinesLink(facility) }, facility)];
  if (filters.area) crumbs.push(" › ", h("a", { href: machinesLink(facility, { area: filters.area }) }, filters.area));
  if (filters.line) crumbs.push(" › ", h("span", {}, filters.line));
  replace(
    ctx.main,
    h("div", { class: "crumbs", id: "crumbs" }, crumbs),
    h("div", { class: "page-head" }, h("h1", { class: "page-title" }, "Machines"), count),
    h(
      "div",
      { class: "machines-layout" },
      tree(facility, assets, filters),
      h(
        "section",
        { class: "machines-main" },
        h(
          "div",
          { class: "filters" },
          searchBox,
          select("area", "Area", assets.areas.map((a) => [a.id, a.name || a.id]), filters.area, onSelect("area")),
          select("line", "Line", lines.map((l) => [l.id, l.name || l.id]), filters.line, onSelect("line")),
          select("type", "Type", assets.machine_types.map((t) => [t.name, t.name]), filters.type, onSelect("type")),
          select("state", "State", [["running", "Running"], ["silent", "Silent"], ["alerting", "Alerting"]], filters.state, onSelect("state")),
          check("silent", "Silent"),
          check("alerting", "Alerting"),
        ),
        grid,
        pager,
      ),
    ),
  );
  if (filters.q) {
    searchBox.focus();
    searchBox.setSelectionRange(filters.q.length, filters.q.length);
  }
  await ctx.poll(async () => {
    const page = await get.machines(
      facility,
      { ...filters, page: filters.page, page_size: PAGE_SIZE },
      { signal: ctx.signal },
    );
    if (!ctx.active) return;
    const pages = Math.max(1, Math.ceil(page.total / PAGE_SIZE));
    replace(count, `${page.total} machine${page.total === 1 ? "" : "s"}`);
    if (!page.machines.length) {
      replace(grid, h("div", { class: "panel empty" }, "No machine matches these filters."));
    } else {
      replace(grid, page.machines.map((m) => machineCard(facility, m)));
    }
    replace(
      pager,
      h("button", { type: "button", class: "btn btn-small", id: "page-prev", disabled: filters.page <= 1, onclick: () => go({ page: filters.page - 1 }) }, "‹ Previous"),
      h("span", { id: "page-info", dataset: { page: filters.page, pages } }, `Page ${filters.page} of ${pages}`),
      h("button", { type: "button", class: "btn btn-small", id: "page-next", disabled: filters.page >= pages, onclick: () => go({ page: filters.page + 1 }) }, "Next ›"),
    );
  }, POLL_MS);
}
