// The dashboard's shell: hash routing, the top bar, polling, and signing in and out.

import { ApiError, get, session } from "./api.js";
import { h, hashLink, localTime, replace } from "./dom.js";
import { loginView } from "./views/login.js";
import { homeView, overviewView } from "./views/overview.js";
import { machineView } from "./views/machine.js";
import { alertsView } from "./views/alerts.js";
import { machinesView } from "./views/machines.js";
import { nodesView } from "./views/nodes.js";

const main = document.getElementById("main");
const topbar = document.getElementById("topbar");
const nav = document.getElementById("nav");
const statusEl = document.getElementById("status");

const ROUTES = [
  [/^\/login$/, loginView],
  [/^\/facility\/([^/]+)\/device\/([^/]+)$/, machineView],
  [/^\/facility\/([^/]+)$/, overviewView],
  [/^\/alerts\/([^/]+)$/, alertsView],
  [/^\/machines\/([^/]+)$/, machinesView],
  [/^\/nodes\/([^/]+)$/, nodesView],
  [/^\/?$/, homeView],
];

let current = null; // the context of the view on screen
let facilities = null; // the facilities this key may see, fetched once per sign-in
let notice = ""; // a message for the login view (why the user is there)
let nextRoute = ""; // where to go after signing in

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function setStatus(kind, text) {
  statusEl.className = `status status-${kind}`;
  replace(statusEl, h("span", { class: "dot" }), text);
}

export function signOut(message = "") {
  session.clear();
  facilities = null;
  notice = message;
  go("#/login");
}

export async function signedIn(key) {
  session.set(key);
  facilities = null;
  notice = "";
  const target = nextRoute && nextRoute !== "#/login" ? nextRoute : "#/";
  nextRoute = "";
  go(target);
}

async function knownFacilities(signal) {
  if (!facilities) facilities = (await get.facilities({ signal })).facilities;
  return facilities;
}

function renderNav(ctx, facility, active) {
  const items = [];
  const list = ctx.facilities || [];
  if (list.length > 1) {
    const select = h(
      "select",
      {
        class: "facility-select",
        "aria-label": "Facility",
        onchange: (event) => go(hashLink("facility", event.target.value)),
      },
      list.map((f) => h("option", { value: f.facility, selected: f.facility === facility }, f.facility)),
    );
    items.push(select);
  } else if (facility) {
    items.push(h("span", { class: "facility-name" }, facility));
  }
  if (facility) {
    items.push(
      h("a", { href: hashLink("facility", facility), class: active === "overview" ? "active" : "" }, "Overview"),
      h("a", { href: hashLink("machines", facility), class: active === "machines" ? "active" : "" }, "Machines"),
      h("a", { href: hashLink("alerts", facility), class: active === "alerts" ? "active" : "" }, "Alerts"),
      h("a", { href: hashLink("nodes", facility), class: active === "nodes" ? "active" : "" }, "Edge nodes"),
    );
  }
  replace(nav, items);
}

function makeContext(params, search) {
  const controller = new AbortController();
  const timers = new Set();
  const ctx = {
    main,
    params,
    search,
    signal: controller.signal,
    facilities,
    get active() {
      return current === ctx && !controller.signal.aborted;
    },
    nav: (facility, active) => renderNav(ctx, facility, active),
    status: setStatus,
    stop() {
      controller.abort();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
    },
    /** Run ``task`` now and every ``ms`` after it finishes, until the view changes. */
    poll(task, ms) {
      const tick = async () => {
        if (!ctx.active) return;
        try {
          await task();
          if (ctx.active) setStatus("live", `Live · updated ${localTime(new Date().toISOString())}`);
        } catch (error) {
          if (!ctx.active || error.name === "AbortError") return;
          if (!ctx.fail(error)) return;
        }
        if (ctx.active) {
          const timer = setTimeout(() => {
            timers.delete(timer);
            tick();
          }, ms);
          timers.add(timer);
        }
      };
      return tick();
    },
    /** Show a request failure; false when the user was sent to sign in again. */
    fail(error) {
      if (error instanceof ApiError && error.status === 401) {
        signOut(`Your key is no longer accepted (401: ${error.message}). Please sign in again.`);
        return false;
      }
      if (error instanceof ApiError && (error.status === 403 || error.status === 404)) {
        setStatus("error", error.message);
        replace(main, h("div", { class: "panel error" }, `${error.message} (${error.status})`));
        return false;
      }
      const text = error instanceof ApiError && error.status === 0 ? "Server unreachable" : error.message;
      setStatus("error", `${text} · retrying`);
      return true;
    },
  };
  return ctx;
}

async function route() {
  if (current) current.stop();
  current = null;
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, queryString = ""] = raw.split("?");
  const search = new URLSearchParams(queryString);
  let found = ROUTES.find(([pattern]) => pattern.test(path));
  if (!found) found = ROUTES[ROUTES.length - 1];
  const [pattern, view] = found;
  const params = (pattern.exec(path) || []).slice(1).map(decodeURIComponent);

  if (view === loginView) {
    topbar.hidden = true;
    const ctx = makeContext(params, search);
    current = ctx;
    loginView(ctx, { notice, hadKey: Boolean(session.key()) });
    notice = "";
    return;
  }
  if (!session.key()) {
    nextRoute = location.hash;
    go("#/login");
    return;
  }
  topbar.hidden = false;
  const ctx = makeContext(params, search);
  current = ctx;
  replace(main, h("p", { class: "loading" }, "Loading…"));
  try {
    ctx.facilities = await knownFacilities(ctx.signal);
  } catch (error) {
    if (error.name === "AbortError") return;
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      signOut(`This key cannot open the dashboard (${error.status}: ${error.message}).`);
      return;
    }
    ctx.fail(error);
    replace(main, h("div", { class: "panel error" }, `Could not load facilities: ${error.message}`));
    return;
  }
  if (ctx.active) await view(ctx);
}

document.getElementById("logout").addEventListener("click", () => signOut("You are signed out."));
window.addEventListener("hashchange", route);
route();
