// A machine's page: its latest values and one live chart per signal over a chosen range, each
// drawn as its kind reads (charts.js): gauges as lines, counters as their increase per bucket,
// booleans as steps, states as a timeline band.

import { get } from "../api.js";
import {
  age, fullTime, h, hashLink, isStale, lineOf, localTime, metricLabel, number, qualityBadge, replace,
  unitLabel,
} from "../dom.js";
import { MetricChart, StateBand, drawMode, stepFor } from "../charts.js";

export const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 24 * 3600e3 };

// short windows move every few seconds; hourly buckets do not need to be fetched that often
const pollFor = (range) => (RANGES[range] <= RANGES["1h"] ? 3000 : 15000);

function rangeBar(facility, device, range) {
  return h(
    "div",
    { class: "segmented", role: "group", "aria-label": "Time range" },
    Object.keys(RANGES).map((r) =>
      h(
        "a",
        {
          href: `${hashLink("facility", facility, "device", device)}?range=${r}`,
          class: r === range ? "active" : "",
          dataset: { range: r },
          "aria-pressed": r === range ? "true" : "false",
        },
        r,
      ),
    ),
  );
}

// a typed latest value as text: true/false and state names as they are, numbers formatted
const shown = (value) => (typeof value === "number" ? number(value) : String(value));

function chartCard(reading) {
  const mode = drawMode(reading);
  // a band is one strip and its legend: it does not need a chart's height
  const plotBox = h("div", { class: "plot", dataset: { mode }, style: mode === "band" ? "min-height:0" : null });
  const value = h("span", { class: "chart-value" });
  const meta = h("span", { class: "chart-meta" });
  const card = h(
    "article",
    { class: "card chart-card", dataset: { metric: reading.metric, points: 0, mode } },
    h(
      "header",
      { class: "card-head" },
      h("h2", {}, metricLabel(reading.metric)),
      value,
    ),
    plotBox,
    h("footer", { class: "chart-foot" }, meta),
  );
  const label = metricLabel(reading.metric);
  const chart = mode === "band" ? new StateBand(plotBox) : new MetricChart(plotBox, { label, unit: reading.unit, mode });
  return { card, chart, value, meta, mode };
}

export async function machineView(ctx) {
  const [facility, device] = ctx.params;
  const range = RANGES[ctx.search.get("range")] ? ctx.search.get("range") : "15m";
  ctx.nav(facility, "machine");
  const alertsLink = h("a", { class: "badge ok alert-count", href: hashLink("alerts", facility) }, "no alerts");
  const grid = h("div", { class: "grid charts" });
  replace(
    ctx.main,
    h(
      "nav",
      { class: "crumbs" },
      h("a", { href: hashLink("facility", facility) }, facility),
      " › ",
      h("span", {}, lineOf(device)),
    ),
    h(
      "div",
      { class: "page-head" },
      h("h1", { class: "page-title", id: "machine-title" }, device, alertsLink),
      rangeBar(facility, device, range),
    ),
    grid,
  );
  const cards = new Map();
  ctx.signal.addEventListener("abort", () => cards.forEach(({ chart }) => chart.destroy()));

  await ctx.poll(async () => {
    const to = Date.now();
    const from = to - RANGES[range];
    const opts = { signal: ctx.signal };
    const [latest, open] = await Promise.all([get.latest(facility, device, opts), get.alerts(facility, "open", opts)]);
    if (!ctx.active) return;
    const mine = open.alerts.filter((a) => a.device === device).length;
    alertsLink.className = `badge ${mine ? "alarm" : "ok"} alert-count`;
    alertsLink.textContent = mine ? `${mine} open alert${mine > 1 ? "s" : ""}` : "no alerts";
    const readings = latest.readings.filter((r) => r.device === device).sort((a, b) => a.metric.localeCompare(b.metric));
    if (!readings.length) {
      replace(grid, h("div", { class: "panel empty" }, `No values from ${device} yet.`));
      return;
    }
    for (const reading of readings) {
      if (!cards.has(reading.metric)) {
        if (!cards.size) grid.replaceChildren();
        const made = chartCard(reading);
        cards.set(reading.metric, made);
        grid.append(made.card);
      }
    }
    const fromIso = new Date(from).toISOString();
    const toIso = new Date(to).toISOString();
    const series = await Promise.all(
      readings.map((r) => {
        const step = stepFor(cards.get(r.metric).mode, RANGES[range]);
        return get.series({ facility, device, metric: r.metric, from: fromIso, to: toIso, step }, opts);
      }),
    );
    if (!ctx.active) return;
    const now = Date.now();
    readings.forEach((reading, i) => {
      const { card, chart, value, meta } = cards.get(reading.metric);
      const points = series[i].points;
      const stale = isStale(reading.ts, now);
      card.dataset.points = String(points.length);
      card.dataset.step = series[i].step;
      card.classList.toggle("stale", stale);
      replace(
        value,
        h("strong", { dataset: { value: reading.value } }, shown(reading.value)),
        h("span", { class: "unit" }, unitLabel(reading.unit)),
        reading.quality === "good" ? null : qualityBadge(reading.quality),
      );
      value.title = fullTime(reading.ts);
      replace(
        meta,
        `${points.length} points · ${series[i].step === "raw" ? "raw" : `${series[i].step} buckets`} · `,
        h("span", { class: stale ? "stale-text" : "" }, `last ${localTime(reading.ts)}${stale ? ` (${age(reading.ts, now)})` : ""}`),
      );
      chart.update(points, series[i].step, from, to);
    });
  }, pollFor(range));
}
