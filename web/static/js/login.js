// "/login": the explorer's access token once; the answer sets an HttpOnly session cookie.
import { app, show, errorBox, h, postJSON, query, title } from "./common.js";

const input = h("input", { type: "password", id: "token", autocomplete: "current-password", size: 40 });
const message = h("div", {});
const form = h("form", { onsubmit: async (event) => {
  event.preventDefault();
  try {
    await postJSON("/api/login", { token: input.value });
    const next = query().get("next") || "/";
    location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/");
  } catch (err) {
    show(message, errorBox(err));
  }
} }, h("label", { for: "token" }, "Access token "), input, " ", h("button", { type: "submit" }, "Log in"));
show(app(), title("Log in"), form, message);
