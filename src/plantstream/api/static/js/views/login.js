// Sign in with a read (or admin) key; the key is checked against the API before it is kept.

import { ApiError, get } from "../api.js";
import { h, replace } from "../dom.js";
import { signedIn } from "../app.js";

function explain(error) {
  if (!(error instanceof ApiError)) return error.message;
  if (error.status === 401) return `This key was not accepted (401): ${error.message}.`;
  if (error.status === 403) {
    return `This key may not read the dashboard (403): ${error.message}. Use a read or admin key.`;
  }
  if (error.status === 0) return "The plantstream server cannot be reached. Check the connection.";
  return `Sign-in failed (${error.status}): ${error.message}.`;
}

export function loginView(ctx, { notice }) {
  const message = h("div", { class: "login-message", id: "login-error", role: "alert", hidden: !notice }, notice);
  const input = h("input", {
    id: "api-key",
    name: "key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "paste a read or admin key",
    required: true,
  });
  const button = h("button", { type: "submit", class: "btn btn-primary", id: "sign-in" }, "Sign in");
  const form = h(
    "form",
    {
      class: "login-card",
      id: "login",
      async onsubmit(event) {
        event.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        button.disabled = true;
        button.textContent = "Checking…";
        try {
          await get.facilities({ key });
          await signedIn(key);
        } catch (error) {
          message.hidden = false;
          message.textContent = explain(error);
          input.select();
        } finally {
          button.disabled = false;
          button.textContent = "Sign in";
        }
      },
    },
    h("div", { class: "brand brand-large" }, "plant", h("span", {}, "stream")),
    h("h1", {}, "Sign in to the plant dashboard"),
    h("label", { for: "api-key" }, "API key"),
    input,
    message,
    button,
    h(
      "p",
      { class: "hint" },
      "Use a read or admin key (plantstream keys create --role read). ",
      "It is kept in this browser tab only and sent with each request as a Bearer token.",
    ),
  );
  replace(ctx.main, h("div", { class: "login-page" }, form));
  input.focus();
}
