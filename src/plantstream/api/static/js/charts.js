// One chart per signal, drawn the way its kind reads: a gauge as a line (the bucket's
// time-weighted average, its min..max as a band), a counter as its increase per bucket, a
// boolean as steps, a state or text signal as a timeline band of time in each state.
// uPlot is vendored under /static/vendor and loaded as a global.

import { h, number, replace } from "./dom.js";

const AXIS = { stroke: "#8d98a7", grid: { stroke: "#232a33", width: 1 }, ticks: { stroke: "#2c343f", width: 1 } };
const LINE = "#3fb6e8";
const STATE_COLOURS = ["#3fb6e8", "#f2a93b", "#e5534b", "#57ab5a", "#b083f0", "#d6a4c6", "#8d98a7", "#c9d1d9"];

/** How a signal is drawn, from its latest value's ``value_type`` and ``kind``. */
export function drawMode(reading) {
  if (reading.value_type === "state" || reading.value_type === "string") return "band";
  if (reading.value_type === "bool") return "steps";
  if (reading.kind === "counter") return "increase";
  return "line";
}

/** The series ``step`` a mode asks for: a counter is always bucketed (its increase per
 * bucket); a state band is drawn from the changes themselves up to a day (a rollup bucket
 * tells the time in each state only where a reading fell, not where a state was held). */
export function stepFor(mode, rangeMs) {
  if (mode === "increase" && rangeMs <= 2 * 3600e3) return "1m";
  if (mode === "band" && rangeMs <= 24 * 3600e3) return "raw";
  return "auto";
}

const seconds = (s) => {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
};

/** A chart in ``box`` that redraws itself for new data and follows the box's width. */
export class MetricChart {
  constructor(box, { label, unit, mode = "line" }) {
    this.box = box;
    this.label = label;
    this.unit = unit;
    this.mode = mode;
    this.plot = null;
    this.step = null;
    this.window = [0, 1];
    this.resize = new ResizeObserver(() => this.plot && this.plot.setSize(this.size()));
    this.resize.observe(box);
  }

  size() {
    return { width: Math.max(240, this.box.clientWidth), height: 200 };
  }

  options(step) {
    const series = [{}];
    const bands = [];
    const value = (u, v) => number(v);
    if (this.mode === "increase") {
      const bars = window.uPlot.paths.bars({ size: [0.8, 40], align: 1 });
      series.push({ label: `${this.label} (increase)`, stroke: LINE, fill: "rgba(63, 182, 232, 0.5)", paths: bars, points: { show: false }, value });
    } else if (this.mode === "steps") {
      const stepped = window.uPlot.paths.stepped({ align: 1 });
      series.push({ label: step === "raw" ? this.label : `${this.label} (share true)`, stroke: LINE, width: 1.5, fill: "rgba(63, 182, 232, 0.12)", paths: stepped, value });
    } else {
      series.push({ label: this.label, stroke: LINE, width: 1.5, fill: "rgba(63, 182, 232, 0.08)", value });
      if (step !== "raw") {
        // rollups: the line is the bucket's time-weighted average, the band spans its min..max
        series.push(
          { label: "min", stroke: "rgba(63, 182, 232, 0.35)", width: 1, value },
          { label: "max", stroke: "rgba(63, 182, 232, 0.35)", width: 1, value },
        );
        bands.push({ series: [3, 2], fill: "rgba(63, 182, 232, 0.12)" });
      }
    }
    const y = this.mode === "steps" ? { range: [-0.05, 1.05] } : {};
    const ticks = this.mode === "steps" && step === "raw" ? (u, t) => t.map((v) => (v === 1 ? "true" : v === 0 ? "false" : "")) : (u, t) => t.map((v) => number(v));
    return {
      ...this.size(),
      series,
      bands,
      scales: { x: { time: true, range: () => this.window }, y },
      axes: [{ ...AXIS }, { ...AXIS, size: 64, values: ticks }],
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
    };
  }

  /** The columns uPlot draws for ``points`` in this chart's mode. */
  columns(points, step) {
    const xs = points.map((p) => Date.parse(p.ts) / 1000);
    if (this.mode === "increase") return [xs, points.map((p) => p.increase ?? null)];
    if (this.mode === "steps") {
      if (step === "raw") return [xs, points.map((p) => (p.value ? 1 : 0))];
      return [xs, points.map((p) => shareTrue(p))];
    }
    const data = [xs, points.map((p) => p.twa ?? p.value)];
    if (step !== "raw") data.push(points.map((p) => p.min ?? p.value), points.map((p) => p.max ?? p.value));
    return data;
  }

  /** Draw ``points`` (the API's series points) over the window [from, to] (epoch ms). */
  update(points, step, from, to) {
    this.window = [from / 1000, to / 1000];
    const data = this.columns(points, step);
    if (!this.plot || this.step !== step) {
      if (this.plot) this.plot.destroy();
      this.step = step;
      this.plot = new window.uPlot(this.options(step), data, this.box);
    } else {
      this.plot.setData(data);
    }
    if (this.mode === "increase") {
      this.box.dataset.increase = String(data[1].reduce((sum, v) => sum + (v ?? 0), 0));
    }
  }

  destroy() {
    this.resize.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

function shareTrue(point) {
  const spans = point.states || {};
  const total = Object.values(spans).reduce((a, b) => a + b, 0);
  return total ? (spans.true || 0) / total : point.value ? 1 : 0;
}

/** Seconds in each state over [from, to] (epoch ms): raw points are changes, each state
 * holding until the next one (the last until ``to``); rollup points carry their own ``states``. */
export function timeInState(points, step, from, to) {
  const spans = [];
  if (step === "raw") {
    points.forEach((p, i) => {
      const start = Math.max(Date.parse(p.ts), from);
      const end = i + 1 < points.length ? Date.parse(points[i + 1].ts) : Math.min(Date.now(), to);
      if (end > start) spans.push({ start, end, state: String(p.value) });
    });
  } else {
    const width = { "1m": 60e3, "1h": 3600e3, "1d": 86400e3 }[step];
    for (const p of points) {
      let at = Date.parse(p.ts);
      const entries = Object.entries(p.states || {});
      const total = entries.reduce((a, [, s]) => a + s, 0);
      for (const [state, s] of entries.sort()) {
        const length = total ? (width * s) / total : 0;
        spans.push({ start: at, end: at + length, state, seconds: s });
        at += length;
      }
    }
  }
  const totals = {};
  for (const span of spans) totals[span.state] = (totals[span.state] || 0) + (span.seconds ?? (span.end - span.start) / 1000);
  return { spans, totals };
}

/** A state (or text) signal as a timeline band: one colour per state, and the time in each. */
export class StateBand {
  constructor(box) {
    this.box = box;
    this.canvas = h("canvas", { class: "state-band", height: 48 });
    this.legend = h("ul", { class: "state-legend", style: "list-style:none;display:flex;flex-wrap:wrap;gap:4px 14px;padding:0;margin:4px 0 0;font-size:12px" });
    this.colours = new Map();
    box.append(this.canvas, this.legend);
    this.last = null;
    this.resize = new ResizeObserver(() => this.last && this.update(...this.last));
    this.resize.observe(box);
  }

  colour(state) {
    if (!this.colours.has(state)) this.colours.set(state, STATE_COLOURS[this.colours.size % STATE_COLOURS.length]);
    return this.colours.get(state);
  }

  update(points, step, from, to) {
    this.last = [points, step, from, to];
    const { spans, totals } = timeInState(points, step, from, to);
    const width = Math.max(240, this.box.clientWidth);
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = width * ratio;
    this.canvas.height = 48 * ratio;
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = "48px";
    const ctx = this.canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.clearRect(0, 0, width, 48);
    const x = (t) => ((t - from) / (to - from)) * width;
    for (const span of spans) {
      ctx.fillStyle = this.colour(span.state);
      ctx.fillRect(x(span.start), 8, Math.max(1, x(span.end) - x(span.start)), 32);
    }
    const names = Object.keys(totals).sort();
    this.box.dataset.states = JSON.stringify(Object.fromEntries(names.map((n) => [n, Math.round(totals[n])])));
    replace(
      this.legend,
      names.map((name) =>
        h(
          "li",
          { dataset: { state: name } },
          h("span", { class: "swatch", style: `display:inline-block;width:10px;height:10px;margin-right:5px;background:${this.colour(name)}` }),
          h("span", { class: "state-name" }, name),
          " ",
          h("span", { class: "state-time", style: "color:var(--muted)" }, seconds(totals[name])),
        ),
      ),
    );
  }

  destroy() {
    this.resize.disconnect();
  }
}
