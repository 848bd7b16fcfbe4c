// Drive an lmc HTML report in headless Chromium through the DevTools
// protocol and check that sorting and filtering really work: click the
// `score` header (a real mouse event at its position), check the rows are
// in score order, click again for the reverse, type a filter into the
// search box (real text input), check exactly the matching rows stay
// visible, pick an outcome in the kind filter, then take a screenshot.
// It also fails when the page throws a script error (the page is reloaded
// once attached, so errors during load count) or has no plot
// (`svg.plot` with drawn marks). With `--compare` it checks an
// `lmc compare --html` report: it sorts on the second cell's score column,
// filters on "differs from the reference", and counts the outlined flips.
//
// Usage: node --experimental-websocket scripts/check-html.mjs [--compare] REPORT.html QUERY [OUT.png]
// Needs Chromium (`chromium`, or $CHROMIUM). Prints one JSON line with what
// it saw; exits 1 when a check fails, 2 on bad usage, 3 when Chromium
// cannot be started. Loopback only: the page is a local file.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const argv = process.argv.slice(2);
const compare = argv[0] === "--compare";
const [report, query, shot] = compare ? argv.slice(1) : argv;
// What to sort on and which outcome to filter, per report kind.
const sortKey = compare ? "c1" : "score";
const kindValue = compare ? "flip" : "wrong";
if (!report || !query) {
  console.error("usage: check-html.mjs [--compare] REPORT.html QUERY [OUT.png]");
  process.exit(2);
}
const browser = process.env.CHROMIUM || "chromium";
const profile = mkdtempSync(join(tmpdir(), "lmc-chromium-"));
const url = pathToFileURL(resolve(report)).href;
const chrome = spawn(browser, [
  "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  `--user-data-dir=${profile}`, "--remote-debugging-port=0", "--window-size=1280,900", url,
], { stdio: ["ignore", "ignore", "pipe"] });

function cleanup() {
  chrome.kill("SIGKILL");
  try { rmSync(profile, { recursive: true, force: true }); } catch { /* best effort */ }
}
function fail(code, msg) {
  console.error(`check-html: ${msg}`);
  cleanup();
  process.exit(code);
}
const deadline = setTimeout(() => fail(3, "timed out"), 60_000);

// Chromium prints its DevTools port on stderr.
const port = await new Promise((ok, ko) => {
  let err = "";
  chrome.stderr.on("data", (d) => {
    err += d;
    const m = err.match(/DevTools listening on ws:\/\/127\.0\.0\.1:(\d+)\//);
    if (m) ok(m[1]);
  });
  chrome.on("error", (e) => ko(e));
  chrome.on("exit", () => ko(new Error(`chromium exited: ${err.slice(-500)}`)));
}).catch((e) => fail(3, `cannot start ${browser}: ${e.message}`));

let page;
for (let i = 0; i < 50 && !page; i++) {
  const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
  page = list.find((t) => t.type === "page" && t.url.startsWith("file:"));
  if (!page) await new Promise((r) => setTimeout(r, 100));
}
if (!page) fail(3, "no page target");

const ws = new WebSocket(page.webSocketDebuggerUrl);
await new Promise((ok) => ws.addEventListener("open", ok, { once: true }));
let nextId = 1;
const pending = new Map();
const scriptErrors = [];
ws.addEventListener("message", (ev) => {
  const msg = JSON.parse(ev.data);
  if (msg.method === "Runtime.exceptionThrown") {
    const d = msg.params.exceptionDetails;
    scriptErrors.push(`${(d.exception && d.exception.description) || d.text} (line ${d.lineNumber})`);
  } else if (msg.method === "Runtime.consoleAPICalled" && msg.params.type === "error") {
    scriptErrors.push(`console.error: ${msg.params.args.map((a) => a.value ?? a.description).join(" ")}`);
  }
  if (msg.id && pending.has(msg.id)) {
    pending.get(msg.id)(msg);
    pending.delete(msg.id);
  }
});
function send(method, params = {}) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params }));
  return new Promise((ok, ko) => pending.set(id, (m) => (m.error ? ko(new Error(`${method}: ${m.error.message}`)) : ok(m.result))));
}
async function js(expr) {
  const r = await send("Runtime.evaluate", { expression: expr, returnByValue: true, awaitPromise: true });
  if (r.exceptionDetails) throw new Error(`page error: ${r.exceptionDetails.text} in ${expr}`);
  return r.result.value;
}
async function click(selector) {
  const box = await js(`(() => { const e = document.querySelector(${JSON.stringify(selector)});
    e.scrollIntoView({block: "center"}); const r = e.getBoundingClientRect();
    return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()`);
  for (const type of ["mousePressed", "mouseReleased"]) {
    await send("Input.dispatchMouseEvent", { type, x: box.x, y: box.y, button: "left", clickCount: 1 });
  }
}
// Rows as the user sees them: visible ones, in display order.
// `score` is the sorted column's value (data-v of the cell under the
// sort header), so one check fits both report kinds.
const visible = `(() => { const ths = Array.from(document.querySelectorAll("#examples thead th"));
  const col = ths.findIndex(t => t.dataset.key === ${JSON.stringify(sortKey)});
  return Array.from(document.querySelectorAll("#examples tbody tr")).filter(r => !r.hidden)
  .map(r => ({row: +r.dataset.row, score: +r.cells[col].getAttribute("data-v"), kind: r.dataset.kind, text: r.textContent.toLowerCase()})); })()`;

const problems = [];
const check = (ok, what) => { if (!ok) problems.push(what); };
try {
  await send("Runtime.enable");
  await send("Page.enable");
  // Reload now that errors are being listened to: a script that throws
  // while the page loads must fail the check too.
  const loaded = new Promise((ok) => {
    const on = (ev) => { if (JSON.parse(ev.data).method === "Page.loadEventFired") { ws.removeEventListener("message", on); ok(); } };
    ws.addEventListener("message", on);
  });
  await send("Page.reload", { ignoreCache: true });
  await loaded;
  for (let i = 0; i < 50 && !(await js(`document.readyState === "complete" && !!document.getElementById("f-shown")`)); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  // Plots: inline SVGs that were laid out with a size and hold marks.
  const plots = await js(`Array.from(document.querySelectorAll("svg.plot")).filter(s => {
    const b = s.getBoundingClientRect(); return b.width > 100 && b.height > 20 && s.querySelectorAll("rect,circle,path,line").length > 2; }).length`);
  check(plots > 0, "the page has at least one rendered plot (svg.plot)");
  const flips = await js(`document.querySelectorAll("svg.plot rect.flip").length`);
  const before = await js(visible);
  const total = before.length;
  check(total > 1, `expected several example rows, got ${total}`);
  check(before.every((r, i) => i === 0 || before[i - 1].row < r.row), "rows start in dataset order");

  const th = `#examples th[data-key="${sortKey}"]`;
  await click(th);
  const asc = await js(visible);
  const ascending = asc.every((r, i) => i === 0 || asc[i - 1].score <= r.score);
  check(ascending, `after one click on \`${sortKey}\`, rows are in ascending order`);
  check(asc.map((r) => r.row).join() !== before.map((r) => r.row).join(), "sorting changed the row order");
  check((await js(`document.querySelector('${th}').getAttribute("aria-sort")`)) === "ascending", "header shows ascending");

  await click(th);
  const desc = await js(visible);
  check(desc.every((r, i) => i === 0 || desc[i - 1].score >= r.score), "after a second click, descending score order");

  await js(`document.getElementById("f-q").focus()`);
  await send("Input.insertText", { text: query });
  const filtered = await js(visible);
  const expected = desc.filter((r) => r.text.includes(query.toLowerCase())).map((r) => r.row);
  check(filtered.length < total, `the filter "${query}" hid some rows (${filtered.length} of ${total} shown)`);
  check(filtered.map((r) => r.row).join() === expected.join(), `the filter shows exactly the matching rows: got [${filtered.map((r) => r.row)}], want [${expected}]`);
  const shownText = await js(`document.getElementById("f-shown").textContent`);
  check(shownText.startsWith(`${filtered.length} of ${total}`), `counter says "${shownText}"`);
  const hash = await js("location.hash");
  check(hash.includes("q=") && hash.includes(`sort=${sortKey}`), `the view is kept in the URL fragment (${hash})`);

  // Narrow by outcome too (the kind filter is a <select>: set it as a user
  // would, then fire the input event the page listens to).
  await js(`(() => { const s = document.getElementById("f-kind"); s.value = ${JSON.stringify(kindValue)}; s.dispatchEvent(new Event("input")); })()`);
  const wrong = await js(visible);
  check(wrong.every((r) => r.kind === kindValue), `the outcome filter keeps only ${kindValue} examples`);
  await js(`(() => { const s = document.getElementById("f-kind"); s.value = ""; s.dispatchEvent(new Event("input")); })()`);

  check(scriptErrors.length === 0, `no script error (${scriptErrors.join("; ")})`);
  if (shot) {
    // The compare report is about its plots: shoot the top of the page
    // down to the agreement matrix; the eval report, its table.
    if (compare) {
      await js(`window.scrollTo(0, 0)`);
    } else {
      await js(`document.querySelector(".filters").scrollIntoView({block: "start"})`);
    }
    const png = await send("Page.captureScreenshot", compare
      ? { format: "png", captureBeyondViewport: true, clip: { x: 0, y: 0, width: 1280, height: await js("Math.min(document.body.scrollHeight, 2400)"), scale: 1 } }
      : { format: "png" });
    writeFileSync(shot, Buffer.from(png.data, "base64"));
  }
  console.log(JSON.stringify({
    total, sorted_ascending: asc.slice(0, 5).map((r) => [r.row, r.score]),
    filter: query, shown_after_filter: filtered.map((r) => r.row), counter: shownText, hash,
    wrong_only: wrong.map((r) => r.row), plots, flips, script_errors: scriptErrors, screenshot: shot || null, problems,
  }));
} catch (e) {
  problems.push(String(e.message || e));
  console.log(JSON.stringify({ problems, script_errors: scriptErrors }));
}
clearTimeout(deadline);
ws.close();
cleanup();
process.exit(problems.length ? 1 : 0);
