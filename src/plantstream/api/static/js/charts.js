// One uPlot chart per metric (uPlot is vendored under /static/vendor and loaded as a global).

import { number } from "./dom.js";

const AXIS = { stroke: "#8d98a7", grid: { stroke: "#232a33", width: 1 }, ticks: { stroke: "#2c343f", width: 1 } };
const LINE = "#3fb6e8";

/** A chart in ``box`` that redraws itself for new data and follows the box's width. */
export class MetricChart {
  constructor(box, { label, unit }) {
    this.box = box;
    this.label = label;
    this.unit = unit;
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
    const series = [
      {},
      { label: this.label, stroke: LINE, width: 1.5, fill: "rgba(63, 182, 232, 0.08)", value: (u, v) => number(v) },
    ];
    const bands = [];
    if (step !== "raw") {
      // rollups: the line is the bucket average, the band spans its min..max
      series.push(
        { label: "min", stroke: "rgba(63, 182, 232, 0.35)", width: 1, value: (u, v) => number(v) },
        { label: "max", stroke: "rgba(63, 182, 232, 0.35)", width: 1, value: (u, v) => number(v) },
      );
      bands.push({ series: [3, 2], fill: "rgba(63, 182, 232, 0.12)" });
    }
    return {
      ...this.size(),
      series,
      bands,
      scales: { x: { time: true, range: () => this.window } },
      axes: [
        { ...AXIS },
        { ...AXIS, size: 64, values: (u, ticks) => ticks.map((t) => number(t)) },
      ],
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
    };
  }

  /** Draw ``points`` (the API's series points) over the window [from, to] (epoch ms). */
  update(points, step, from, to) {
    this.window = [from / 1000, to / 1000];
    const xs = points.map((p) => Date.parse(p.ts) / 1000);
    const data = [xs, points.map((p) => p.value)];
    if (step !== "raw") data.push(points.map((p) => p.min ?? p.value), points.map((p) => p.max ?? p.value));
    if (!this.plot || this.step !== step) {
      if (this.plot) this.plot.destroy();
      this.step = step;
      this.plot = new window.uPlot(this.options(step), data, this.box);
    } else {
      this.plot.setData(data);
    }
  }

  destroy() {
    this.resize.disconnect();
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}
