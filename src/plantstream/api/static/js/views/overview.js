// The facility list and a facility's overview: machines by line with their latest values.

import { get } from "../api.js";
import {
  age, fullTime, h, hashLink, isStale, lineOf, localTime, metricLabel, number, qualityBadge,
  replace, unitLabel,
} from "../dom.js";

const POLL_MS = 5000;
// past this many machines the overview shows its summary and sends to the paged machine list
export const OVERVIEW_MAX_MACHINES = 200;

export async function homeView(ctx) {
  const list = ctx.facilities;
  if (list.length === 1) {
    location.replace(hashLink("facility", list[0].facility));
    return;
  }
  ctx.nav(null, null);
  ctx.status("live", "");
  if (!list.length) {
    replace(ctx.main, h("div", { class: "panel empty" }, "No facility has sent data that this key may see yet."));
    return;
  }
  replace(
    ctx.main,
    h("h1", { class: "page-title" }, "Facilities"),
    h(
      "div",
      { class: "grid facilities" },
      list.map((f) =>
        h(
          "a",
          { class: "card facility-card", href: hashLink("facility", f.facility), dataset: { facility: f.facility } },
          h("h2", {}, f.facility),
          h(
            "div",
            { class: "tiles" },
            tile("Machines", f.devices),
            tile("Sensors", f.sensors),
            tile("Open alerts", f.open_alerts, f.open_alerts ? "alarm" : "ok"),
          ),
        ),
      ),
    ),
  );
}

function tile(label, value, tone = "", href = null) {
  const body = [h("div", { class: "tile-value" }, value), h("div", { class: "tile-label" }, label)];
  return href
    ? h("a", { class: `tile ${tone}`, href }, body)
    : h("div", { class: `tile ${tone}` }, body);
}

function byDevice(readings) {
  const devices = new Map();
  for (const reading of readings) {
    if (!devices.has(reading.device)) devices.set(reading.device, []);
    devices.get(reading.device).push(reading);
  }
  return devices;
}

export function metricRow(reading, now) {
  const stale = isStale(reading.ts, now);
  return h(
    "tr",
    {
      class: `metric-row${stale ? " stale" : ""}`,
      dataset: { metric: reading.metric, value: reading.value, ts: reading.ts, stale: stale ? "true" : "false" },
    },
    h("th", { scope: "row" }, metricLabel(reading.metric)),
    h("td", { class: "value" }, number(reading.value)),
    h("td", { class: "unit" }, unitLabel(reading.unit)),
    h("td", { class: "quality" }, reading.quality === "good" ? "" : qualityBadge(reading.quality)),
    h(
      "td",
      { class: "time", title: `${fullTime(reading.ts)}${stale ? " — stale (older than 1 minute)" : ""}` },
      stale ? age(reading.ts, now) : localTime(reading.ts),
    ),
  );
}

function deviceCard(facility, device, readings, openAlerts, now) {
  const newest = readings.reduce((a, b) => (a.ts > b.ts ? a : b));
  const stale = isStale(newest.ts, now);
  const kind = device.split("-").slice(-2, -1)[0] || "";
  return h(
    "article",
    { class: `card device-card${stale ? " stale" : ""}${openAlerts ? " has-alerts" : ""}`, dataset: { device } },
    h(
      "header",
      { class: "card-head" },
      h("a", { class: "device-link", href: hashLink("facility", facility, "device", device), title: device }, device),
      h("span", { class: "kind" }, kind),
      openAlerts
        ? h(
            "a",
            { class: "badge alarm alert-count", href: hashLink("alerts", facility), dataset: { open: openAlerts } },
            `${openAlerts} open alert${openAlerts > 1 ? "s" : ""}`,
          )
        : h("span", { class: "badge ok alert-count", dataset: { open: 0 } }, "no alerts"),
    ),
    h(
      "table",
      { class: "metrics" },
      h(
        "tbody",
        {},
        readings.sort((a, b) => a.metric.localeCompare(b.metric)).map((r) => metricRow(r, now)),
      ),
    ),
  );
}

export async function overviewView(ctx) {
  const [facility] = ctx.params;
  ctx.nav(facility, "overview");
  const summary = h("div", { class: "tiles summary" });
  const body = h("div", { class: "lines" });
  replace(
    ctx.main,
    h("div", { class: "page-head" }, h("h1", { class: "page-title" }, facility), summary),
    body,
  );
  await ctx.poll(async () => {
    const [open, facilities] = await Promise.all([
      get.alerts(facility, "open", { signal: ctx.signal }),
      get.facilities({ signal: ctx.signal }),
    ]);
    if (!ctx.active) return;
    const info = facilities.facilities.find((f) => f.facility === facility);
    if (info && info.devices > OVERVIEW_MAX_MACHINES) {
      replace(
        summary,
        tile("Machines", info.devices, "", hashLink("machines", facility)),
        tile("Sensors", info.sensors),
        tile("Open alerts", open.alerts.length, open.alerts.length ? "alarm" : "ok", hashLink("alerts", facility)),
      );
      replace(
        body,
        h(
          "div",
          { class: "panel", id: "too-many" },
          `${info.devices} machines are more than one page shows: `,
          h("a", { href: hashLink("machines", facility) }, "browse them by area and line, search and filter"),
          ".",
        ),
      );
      return;
    }
    const latest = await get.latest(facility, null, { signal: ctx.signal });
    if (!ctx.active) return;
    const now = Date.now();
    const alertsByDevice = new Map();
    for (const alert of open.alerts) alertsByDevice.set(alert.device, (alertsByDevice.get(alert.device) || 0) + 1);
    const devices = byDevice(latest.readings);
    const newest = latest.readings.reduce((a, r) => (a && a > r.ts ? a : r.ts), "");
    const staleCount = [...devices.values()].filter((rs) => rs.every((r) => isStale(r.ts, now))).length;
    replace(
      summary,
      tile("Machines", info ? info.devices : devices.size),
      tile("Sensors", info ? info.sensors : latest.readings.length),
      tile("Open alerts", open.alerts.length, open.alerts.length ? "alarm" : "ok", hashLink("alerts", facility)),
      tile("Last reading", newest ? localTime(newest) : "–", newest && isStale(newest, now) ? "warn" : ""),
      staleCount ? tile("Silent machines", staleCount, "warn") : null,
    );
    if (!devices.size) {
      replace(body, h("div", { class: "panel empty" }, "No latest values for this facility yet."));
      return;
    }
    const lines = new Map();
    for (const device of [...devices.keys()].sort()) {
      const line = lineOf(device);
      if (!lines.has(line)) lines.set(line, []);
      lines.get(line).push(device);
    }
    replace(
      body,
      [...lines].map(([line, names]) =>
        h(
          "section",
          { class: "line", dataset: { line } },
          h("h2", { class: "line-title" }, line, h("span", { class: "muted" }, ` · ${names.length} machines`)),
          h(
            "div",
            { class: "grid devices" },
            names.map((d) => deviceCard(facility, d, devices.get(d), alertsByDevice.get(d) || 0, now)),
          ),
        ),
      ),
    );
  }, POLL_MS);
}
