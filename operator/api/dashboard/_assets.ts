/**
 * The browser's files, imported as text so that they are part of the operator
 * itself: `deno bundle` (the container image) inlines them like code, and
 * nothing is read from disk or fetched at run time.
 *
 * @module
 */

import APP_JS from "./static/app.js" with { type: "text" };
import DEVICE_JS from "./static/device.js" with { type: "text" };
import RENDER_JS from "./static/render.js" with { type: "text" };
import STYLE_CSS from "./static/style.css" with { type: "text" };

export { APP_JS, DEVICE_JS, RENDER_JS, STYLE_CSS };
