"""Headless Chromium, offline, for the explore page: open a copy of the page with a probe script, read its answer.

The probe is an async JavaScript function of the page's Vega view, run once vega-embed has
drawn it; it may click and hover through `click` and `hover` (events synthesized at an
item's position on the canvas, as a mouse would send them) and returns a JSON value.
Network is blocked: every request goes to a proxy that does not exist.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

HELPERS = """
const marks = (node, name, out = []) => {  // the items of the marks whose name matches `name`, anywhere
  if (name.test(node.name)) out.push(...node.items);
  for (const item of node.items || []) for (const child of item.items || []) marks(child, name, out);
  return out;
};
const items = (view, name) => marks(view.scenegraph().root, name);  // name: a RegExp, e.g. /^phase.*_marks$/
const at = (view, item) => {  // an item's centre in client coordinates
  let x = item.x + (item.width || 0) / 2, y = item.y + (item.height || 0) / 2;
  for (let g = item.mark.group; g; g = g.mark && g.mark.group) { x += g.x || 0; y += g.y || 0; }
  const box = view.container().querySelector("canvas, svg").getBoundingClientRect(), [ox, oy] = view.origin();
  return {clientX: box.left + ox + x, clientY: box.top + oy + y};
};
const send = (view, item, types, extra = {}) => {  // the SVG renderer finds the item by the event's target
  const target = item._svg || view.container().querySelector("canvas"), where = {...at(view, item), bubbles: true, ...extra};
  for (const type of types) target.dispatchEvent(new (type.startsWith("pointer") ? PointerEvent : MouseEvent)(type, where));
  return new Promise((done) => setTimeout(done, 50)).then(() => view.runAsync());
};
const hover = (view, item) => send(view, item, ["pointerover", "pointermove", "mouseover", "mousemove"]);
const click = (view, item, shift = false) => send(view, item,
  ["pointermove", "mousemove", "pointerdown", "mousedown", "pointerup", "mouseup", "click"], {shiftKey: shift});
"""


def chromium() -> str:
    """The Chromium executable; a missing browser is an error (CI installs it), not a reason to skip."""
    found = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if found is None:
        raise RuntimeError("chromium not found: the explore page's tests need it (apt-get install chromium)")
    return found


def probe(page: Path, function: str, budget_ms: int = 30_000, screenshot: Path | None = None,
          window: tuple[int, int] = (1400, 1800)) -> object:
    """Open a copy of `page` and return what `function` (JavaScript: `async (view) => value`) answers, with the
    time from navigation start to the views drawn (`loaded_ms`); with `screenshot`, also a PNG of the window after it."""
    copy = page.with_name(f".probe-{page.name}")
    script = f"""<script>{{  // a block: the bundle's top-level names stay its own
{HELPERS}
const embed = window.vegaEmbed;
window.vegaEmbed = (...args) => embed(...args).then(async (result) => {{
  await result.view.runAsync();
  const loaded_ms = performance.now();
  let answer;
  try {{ answer = {{loaded_ms, value: await ({function})(result.view)}}; }}
  catch (err) {{ answer = {{error: String(err && err.stack || err)}}; }}
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(answer);
  document.body.appendChild(pre);
  return result;
}});
}}</script>"""
    copy.write_text(page.read_text().replace("</script>", "</script>" + script, 1))  # after the bundle's script
    outputs = ["--dump-dom"] + ([f"--screenshot={screenshot.resolve()}"] if screenshot else [])
    try:
        dom, *_ = (subprocess.run(
            [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--hide-scrollbars",
             "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--window-size={},{}".format(*window),
             f"--virtual-time-budget={budget_ms}", output, copy.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, env={**os.environ, "LANG": "C.UTF-8"},
        ).stdout for output in outputs)
    finally:
        copy.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    if found is None:
        raise AssertionError("the page never finished drawing (no answer from the probe)")
    answer = json.loads(html.unescape(found.group(1)))
    if "error" in answer:
        raise AssertionError(f"the probe failed in the page: {answer['error']}")
    return answer
