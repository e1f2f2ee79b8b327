// Small DOM and formatting helpers. Text always goes in through textContent, never innerHTML:
// device names and alert messages come from the field and are not trusted.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

export const STALE_MS = 60_000;

export const isStale = (iso, now = Date.now()) => now - Date.parse(iso) > STALE_MS;

const sameDay = (a, b) => a.toDateString() === b.toDateString();

/** A timestamp in the browser's local time: the time of day today, else date and time. */
export function localTime(iso) {
  if (!iso) return "";
  const at = new Date(iso);
  const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (sameDay(at, new Date())) return time;
  return `${at.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

export function fullTime(iso) {
  return iso ? new Date(iso).toLocaleString([], { timeZoneName: "short" }) : "";
}

export function age(iso, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function number(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const magnitude = Math.abs(value);
  const digits = magnitude >= 1000 ? 0 : magnitude >= 100 ? 1 : magnitude >= 1 ? 2 : 3;
  return value.toLocaleString([], { minimumFractionDigits: 0, maximumFractionDigits: digits });
}

const LABELS = {
  temperature: "Temperature",
  pressure: "Pressure",
  vibration_rms: "Vibration (RMS)",
  spindle_speed: "Spindle speed",
  production_count: "Parts produced",
  current: "Current",
  power: "Power",
  humidity: "Humidity",
  flow_rate: "Flow rate",
};

export const metricLabel = (metric) => LABELS[metric] || metric.replaceAll("_", " ");

const UNITS = { degC: "°C", degF: "°F", count: "" };

export const unitLabel = (unit) => (unit in UNITS ? UNITS[unit] : unit);

/** The production line a device belongs to, from names like ``line-1-cnc-01``. */
export function lineOf(device) {
  const match = /^(.+?-\d+)-/.exec(device);
  return match ? match[1] : "other";
}

export function qualityBadge(quality) {
  return h("span", { class: `badge quality-${quality}`, title: `quality: ${quality}` }, quality);
}

export function hashLink(...parts) {
  return `#/${parts.map(encodeURIComponent).join("/")}`;
}
