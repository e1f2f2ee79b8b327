// A facility's alerts, filtered by state, with an Acknowledge button on open ones and each
// alert's evidence (window, baseline, bound, readings) drawn on a chart on demand.

import { acknowledge, get } from "../api.js";
import { ApiError } from "../api.js";
import { fullTime, h, hashLink, localTime, metricLabel, replace } from "../dom.js";
import { evidencePanel } from "../evidence.js";

const POLL_MS = 5000;
const FILTERS = {
  active: { label: "Active", states: ["open", "acknowledged"] },
  open: { label: "Open", states: ["open"] },
  acknowledged: { label: "Acknowledged", states: ["acknowledged"] },
  resolved: { label: "Resolved", states: ["resolved"] },
  all: { label: "All", states: [null] },
};

function filterBar(facility, chosen) {
  return h(
    "div",
    { class: "segmented", role: "group", "aria-label": "Alert state" },
    Object.entries(FILTERS).map(([name, { label }]) =>
      h(
        "a",
        {
          href: `${hashLink("alerts", facility)}?state=${name}`,
          class: name === chosen ? "active" : "",
          dataset: { filter: name },
          "aria-pressed": name === chosen ? "true" : "false",
        },
        label,
      ),
    ),
  );
}

function when(iso) {
  return iso ? h("time", { datetime: iso, title: fullTime(iso) }, localTime(iso)) : "";
}

export async function alertsView(ctx) {
  const [facility] = ctx.params;
  const chosen = FILTERS[ctx.search.get("state")] ? ctx.search.get("state") : "active";
  ctx.nav(facility, "alerts");
  const tbody = h("tbody");
  const empty = h("div", { class: "panel empty", hidden: true }, "No alerts in this view.");
  replace(
    ctx.main,
    h("div", { class: "page-head" }, h("h1", { class: "page-title" }, `Alerts · ${facility}`), filterBar(facility, chosen)),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "alerts", id: "alerts-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Severity", "State", "Machine", "Metric", "Message", "Opened", "Last seen", "Acknowledged", ""].map((t) =>
              h("th", { scope: "col" }, t),
            ),
          ),
        ),
        tbody,
      ),
    ),
    empty,
  );
  // alerts acknowledged here stay on screen (in their new state) even under the "Open" filter
  const touched = new Map();
  // evidence rows open by alert id: kept across polls so a drawn chart is not drawn again
  const shown = new Map();

  function evidenceRow(alert) {
    let tr = shown.get(alert.id);
    if (!tr) {
      tr = h("tr", { class: "evidence-row", dataset: { alertId: alert.id } }, h("td", { colspan: 9 }, evidencePanel(facility, alert, { signal: ctx.signal })));
      shown.set(alert.id, tr);
    }
    return tr;
  }

  function row(alert) {
    const error = h("span", { class: "row-error", role: "alert" });
    let action = "";
    if (alert.state === "open") {
      action = h(
        "button",
        {
          type: "button",
          class: "btn btn-small ack",
          async onclick(event) {
            const button = event.currentTarget;
            button.disabled = true;
            button.textContent = "Acknowledging…";
            try {
              const updated = await acknowledge(alert.id);
              touched.set(updated.id, updated);
              tr.replaceWith(row(updated));
            } catch (failure) {
              if (failure instanceof ApiError && failure.status === 401) return ctx.fail(failure);
              button.disabled = false;
              button.textContent = "Acknowledge";
              error.textContent = `Failed: ${failure.message}`;
            }
          },
        },
        "Acknowledge",
      );
    }
    const tr = h(
      "tr",
      { class: `alert-row state-${alert.state} sev-${alert.severity}`, dataset: { alertId: alert.id, state: alert.state } },
      h("td", {}, h("span", { class: `badge sev ${alert.severity}` }, alert.severity)),
      h("td", { class: "state" }, h("span", { class: `badge state ${alert.state}` }, alert.state)),
      h("td", {}, h("a", { href: hashLink("facility", facility, "device", alert.device) }, alert.device)),
      h("td", {}, metricLabel(alert.metric)),
      h(
        "td",
        { class: "message", title: JSON.stringify(alert.details) },
        alert.message,
        h("small", { class: "muted" }, ` ${alert.detector}`),
        " ",
        h(
          "button",
          {
            type: "button",
            class: "btn btn-small evidence-toggle",
            "aria-expanded": shown.has(alert.id) ? "true" : "false",
            onclick(event) {
              const button = event.currentTarget;
              if (shown.has(alert.id)) {
                shown.get(alert.id).remove();
                shown.delete(alert.id);
                button.setAttribute("aria-expanded", "false");
              } else {
                tr.after(evidenceRow(alert));
                button.setAttribute("aria-expanded", "true");
              }
            },
          },
          "Evidence",
        ),
      ),
      h("td", {}, when(alert.opened_at)),
      h("td", {}, when(alert.last_seen_at)),
      h(
        "td",
        { class: "acked" },
        alert.acknowledged_at ? [when(alert.acknowledged_at), h("small", { class: "muted" }, ` by ${alert.acknowledged_by || "?"}`)] : "",
      ),
      h("td", { class: "action" }, action, error),
    );
    return tr;
  }

  await ctx.poll(async () => {
    const opts = { signal: ctx.signal };
    const answers = await Promise.all(FILTERS[chosen].states.map((state) => get.alerts(facility, state, opts)));
    if (!ctx.active) return;
    const byId = new Map();
    for (const answer of answers) for (const alert of answer.alerts) byId.set(alert.id, alert);
    for (const [id, alert] of touched) if (!byId.has(id)) byId.set(id, alert);
    const alerts = [...byId.values()].sort((a, b) => (a.opened_at < b.opened_at ? 1 : -1));
    if (tbody.querySelector("button.ack:disabled")) return; // an acknowledge is in flight
    replace(
      tbody,
      alerts.map((alert) => (shown.has(alert.id) ? [row(alert), evidenceRow(alert)] : row(alert))),
    );
    empty.hidden = alerts.length > 0;
  }, POLL_MS);
}
