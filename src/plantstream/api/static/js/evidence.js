// An alert's evidence on a chart: the readings around it, the window the detector judged,
// the baseline and the bound it crossed (the alert's details), and the signals it names.

import { get } from "./api.js";
import { h, metricLabel, number } from "./dom.js";

const MIN_SPAN_MS = 60_000;
const BEFORE = 10; // spans of the judged window shown before it (the baseline's context)
const AFTER = 10;
const MAX_RANGE_MS = 7 * 86_400_000;
const LINE = "#3fb6e8";
const BASE = "#9aa5b1";
const BOUND = "#e8a33f";
const WINDOW_FILL = "rgba(232, 96, 63, 0.18)";

const finite = (x) => typeof x === "number" && Number.isFinite(x);

/** What an alert's details say, in chart terms: times in ms, bounds in the signal's units. */
export function evidenceOf(alert) {
  const d = alert.details || {};
  const w = d.window || {};
  const opened = Date.parse(alert.opened_at);
  const from = finite(w.from_us) ? w.from_us / 1000 : opened;
  const to = finite(w.to_us) ? w.to_us / 1000 : opened;
  const out = { from, to, readings: w.readings, median: w.median, detector: d.detector || alert.detector };
  if (finite(d.baseline)) out.baseline = d.baseline;
  if (finite(d.statistic)) out.statistic = d.statistic;
  if (finite(d.threshold)) out.threshold = d.threshold;
  if (finite(d.sigma)) out.sigma = d.sigma;
  // a z-score's bound is in sigmas around the baseline; a limit's is the value itself
  if (finite(out.baseline) && finite(out.sigma) && finite(out.threshold) && out.detector !== "limit") {
    if (["zscore", "trend"].includes(out.detector)) {
      out.upper = out.baseline + out.threshold * out.sigma;
      out.lower = out.baseline - out.threshold * out.sigma;
    }
  } else if (out.detector === "limit" && finite(out.threshold)) {
    out.limit = out.threshold;
  }
  out.contributing = Array.isArray(d.contributing) ? d.contributing : [];
  return out;
}

function range(alert, ev) {
  const span = Math.max(MIN_SPAN_MS, ev.to - ev.from);
  const end = alert.resolved_at ? Date.parse(alert.resolved_at) : Date.parse(alert.last_seen_at || alert.opened_at);
  const from = ev.from - BEFORE * span;
  const to = Math.min(Math.max(end, ev.to) + AFTER * span, from + MAX_RANGE_MS, Date.now());
  return [from, Math.max(to, ev.to + span)];
}

function summary(ev) {
  const item = (term, value) => (value === undefined || value === "" ? [] : [[h("span", { class: "muted" }, `${term} `), h("strong", {}, value)]]);
  const facts = [
    item("detector", ev.detector),
    item("window", `${new Date(ev.from).toISOString()} – ${new Date(ev.to).toISOString()}` + (ev.readings ? ` (${ev.readings} readings)` : "")),
    item("window median", finite(ev.median) ? number(ev.median) : undefined),
    item("baseline", finite(ev.baseline) ? number(ev.baseline) : undefined),
    item("sigma", finite(ev.sigma) ? number(ev.sigma) : undefined),
    item("statistic", finite(ev.statistic) ? number(ev.statistic) : undefined),
    item("threshold", finite(ev.threshold) ? number(ev.threshold) : undefined),
    item("contributing", ev.contributing.map((c) => (typeof c === "string" ? c : `${c.signal} ${number(c.share * 100)}%`)).join(", ")),
  ].flat(1);
  return h("p", { class: "evidence-facts" }, facts.map((fact, i) => (i ? [" · ", fact] : fact)));
}

function options(width, ev, from, to, hasBounds) {
  const series = [{}, { label: "value", stroke: LINE, width: 1.5, value: (u, v) => number(v) }];
  if (finite(ev.baseline)) series.push({ label: "baseline", stroke: BASE, width: 1, dash: [6, 4] });
  if (hasBounds) {
    series.push({ label: "upper bound", stroke: BOUND, width: 1, dash: [3, 3] });
    series.push({ label: "lower bound", stroke: BOUND, width: 1, dash: [3, 3] });
  }
  if (finite(ev.limit)) series.push({ label: "limit", stroke: BOUND, width: 1, dash: [3, 3] });
  return {
    width,
    height: 180,
    series,
    scales: { x: { time: true, range: () => [from / 1000, to / 1000] } },
    cursor: { drag: { x: false, y: false } },
    hooks: {
      // the judged window, shaded under the lines
      drawClear: [
        (u) => {
          const left = u.valToPos(ev.from / 1000, "x", true);
          const right = u.valToPos(Math.max(ev.to, ev.from + 1000) / 1000, "x", true);
          u.ctx.save();
          u.ctx.fillStyle = WINDOW_FILL;
          u.ctx.fillRect(left, u.bbox.top, Math.max(2, right - left), u.bbox.height);
          u.ctx.restore();
        },
      ],
    },
  };
}

/** A panel with the evidence of ``alert`` (facility ``facility``): facts, then the chart. */
export function evidencePanel(facility, alert, { signal } = {}) {
  const ev = evidenceOf(alert);
  const box = h("div", { class: "plot evidence-plot" });
  const status = h("p", { class: "muted evidence-status" }, "Loading readings…");
  const panel = h(
    "div",
    { class: "panel evidence", dataset: { alertId: alert.id } },
    h("h3", {}, `${metricLabel(alert.metric)} on ${alert.device}: what the alert rests on`),
    summary(ev),
    status,
    box,
  );
  const [from, to] = range(alert, ev);
  get
    .series(
      { facility, device: alert.device, metric: alert.metric, from: new Date(from).toISOString(), to: new Date(to).toISOString(), step: "auto" },
      { signal },
    )
    .then((answer) => {
      const points = answer.points || [];
      const xs = points.map((p) => Date.parse(p.ts) / 1000);
      const data = [xs, points.map((p) => p.value)];
      const flat = (v) => xs.map(() => v);
      if (finite(ev.baseline)) data.push(flat(ev.baseline));
      const hasBounds = finite(ev.upper) && finite(ev.lower);
      if (hasBounds) data.push(flat(ev.upper), flat(ev.lower));
      if (finite(ev.limit)) data.push(flat(ev.limit));
      panel.dataset.points = String(points.length);
      panel.dataset.step = answer.step || "";
      status.textContent = `${points.length} points · ${answer.step === "raw" ? "raw" : `${answer.step} buckets`}; shaded: the window judged`;
      const width = Math.max(320, box.clientWidth || 640);
      new window.uPlot(options(width, ev, from, to, hasBounds), data, box);
      panel.dataset.drawn = "true";
    })
    .catch((failure) => {
      if (failure && failure.name === "AbortError") return;
      status.textContent = `Readings could not be loaded: ${failure.message}`;
      panel.dataset.drawn = "failed";
    });
  return panel;
}
