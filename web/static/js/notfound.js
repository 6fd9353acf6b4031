// Any path the explorer has no page for: say so under the navigation, with the way back.
import { app, errorBox, h, page, show, title } from "./common.js";

page(async () => show(app(), title("Not found"),
  errorBox({ code: "NOT_FOUND", message: `the explorer has no page at ${location.pathname}` }),
  h("p", {}, h("a", { href: "/" }, "the served models"), " · ", h("a", { href: "/lab" }, "the lab"))));
