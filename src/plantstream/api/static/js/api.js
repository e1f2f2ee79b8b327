// The HTTP API as the dashboard uses it: the key lives in sessionStorage only (one tab,
// gone when the tab closes) and goes out as "Authorization: Bearer <key>".

const KEY = "plantstream.key";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const session = {
  key: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

export async function call(path, { method = "GET", key = session.key(), signal } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      signal,
      cache: "no-store",
      headers: { Authorization: `Bearer ${key || ""}`, Accept: "application/json" },
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", "the server cannot be reached");
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || response.statusText || "request failed",
    );
  }
  return body;
}

export function query(path, params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  return `${path}?${search}`;
}

export const get = {
  facilities: (opts) => call("/v1/facilities", opts),
  latest: (facility, device, opts) => call(query("/v1/latest", { facility, device }), opts),
  series: (params, opts) => call(query("/v1/series", params), opts),
  alerts: (facility, state, opts) => call(query("/v1/alerts", { facility, state }), opts),
  assets: (facility, params, opts) => call(query("/v1/assets", { facility, ...params }), opts),
  machines: (facility, params, opts) => call(query("/v1/assets/machines", { facility, ...params }), opts),
  sparkplugNodes: (facility, opts) => call(query("/v1/sparkplug/nodes", { facility }), opts),
};

export const acknowledge = (id) => call(`/v1/alerts/${encodeURIComponent(id)}/ack`, { method: "POST" });
