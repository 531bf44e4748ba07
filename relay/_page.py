"""The status page the relay serves at ``GET /`` to a browser: one HTML file, its style and a few lines
of plain JavaScript inline (no framework, no CDN: it works offline), reading ``/status`` every two
seconds. It shows only what ``/status`` holds - never prompt or answer text - and writes every
value as text, never as markup."""

PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MCP Token Bridge</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 72rem; padding: 0.75rem;
         color: #1b1f24; }
  h1 { font-size: 1.2rem; margin: 0 0 0.25rem; }
  h2 { font-size: 1rem; margin: 1.25rem 0 0.4rem; }
  .meta { color: #57606a; }
  .scroll { overflow-x: auto; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 0.25rem 0.5rem; border-bottom: 1px solid #d0d7de; white-space: nowrap; }
  th { font-weight: 600; background: #f6f8fa; }
  td.n { text-align: right; }
  .serving { color: #1a7f37; } .away { color: #9a6700; } .error { color: #cf222e; }
  .empty { color: #57606a; font-style: italic; }
  .totals { display: flex; flex-wrap: wrap; gap: 1rem; } .totals > div { flex: 1 1 18rem; min-width: 0; }
</style>
</head>
<body>
<h1>MCP Token Bridge</h1>
<div class="meta" id="meta">loading...</div>
<h2>MCP servers</h2>
<div class="scroll"><table id="workers"><thead><tr><th>client</th><th>MCP</th><th>mode</th><th>agent</th>
<th>free slots</th><th>in flight</th><th>connected</th></tr></thead><tbody></tbody></table></div>
<h2>In flight</h2>
<div class="scroll"><table id="inflight"><thead><tr><th>request</th><th>API</th><th>model</th><th>state</th><th>age</th>
<th>worker</th></tr></thead><tbody></tbody></table></div>
<h2>Last requests</h2>
<div class="scroll"><table id="recent"><thead><tr><th>time</th><th>API</th><th>model</th><th>status</th>
<th>duration</th><th>first byte</th><th>tokens in</th><th>tokens out</th><th>handed</th><th>client</th>
</tr></thead>
<tbody></tbody></table></div>
<h2>Totals</h2>
<div class="totals">
<div><h3>Today, per model</h3><div class="scroll"><table id="today-model"></table></div></div>
<div><h3>Today, per client</h3><div class="scroll"><table id="today-client"></table></div></div>
<div><h3>Last 7 days, per model</h3><div class="scroll"><table id="week-model"></table></div></div>
<div><h3>Last 7 days, per client</h3><div class="scroll"><table id="week-client"></table></div></div>
</div>
<p class="meta">Tokens marked ~ are estimated (counted locally as a tokenizer would, roughly): MCP clients
rarely report them. "Handed": characters of a request a serving agent was given to read - what
its turn costs you. Totals include the usage ledger's days before the relay started;
<code>mcptb-relay usage</code> shows more.</p>
<script>
"use strict";
function ago(s) {
  return s < 90 ? Math.round(s) + " s" : s < 5400 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h";
}
function ms(s) { return s == null ? "-" : s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(2) + " s"; }
function row(table, cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    const v = typeof c === "object" && c !== null ? c : {text: c};
    td.textContent = v.text == null ? "-" : String(v.text);
    if (v.cls) td.className = v.cls;
    tr.appendChild(td);
  }
  table.appendChild(tr);
}
function fill(id, rows, empty, render) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  if (!rows.length) { row(body, [{text: empty, cls: "empty"}]); return; }
  for (const r of rows) row(body, render(r));
}
function totals(id, rows) {
  const t = document.getElementById(id);
  t.replaceChildren();
  const head = document.createElement("tbody");
  row(head, ["", "requests", "tokens in", "tokens out", "handed"]);
  for (const r of rows) {
    row(head, [r.name, {text: r.requests, cls: "n"}, {text: r.tokens_in, cls: "n"}, {text: r.tokens_out, cls: "n"},
      {text: r.handed, cls: "n"}]);
  }
  if (!rows.length) row(head, [{text: "none yet", cls: "empty"}]);
  t.appendChild(head);
}
async function refresh() {
  let s;
  try {
    const r = await fetch("/status", {cache: "no-store", credentials: "same-origin"});
    if (!r.ok) throw new Error("HTTP " + r.status);
    s = await r.json();
  } catch (e) {
    document.getElementById("meta").textContent = "cannot reach the relay: " + e.message;
    return;
  }
  document.getElementById("meta").textContent =
    "relay " + s.relay.version + ", up " + ago(s.relay.uptime_seconds) +
    " - updated " + new Date().toLocaleTimeString();
  fill("workers", s.workers, "no MCP server connected", w => [
    w.client + (w.client_version ? " " + w.client_version : ""), w.protocol_version, w.modes.join("+") || "none",
    {text: w.agent, cls: w.agent === "away" ? "away" : w.agent === "serving" ? "serving" : ""},
    {text: w.free_slots, cls: "n"}, {text: w.in_flight, cls: "n"}, ago(w.connected_seconds)]);
  fill("inflight", s.in_flight, "nothing in flight",
    j => [j.id, j.api, j.model, j.state, ago(j.age_seconds), j.worker]);
  fill("recent", s.recent, "no requests yet", r => [
    new Date(r.at * 1000).toLocaleTimeString(), r.api, r.model,
    {text: r.status + (r.outcome !== "ok" ? " " + r.outcome : ""), cls: r.outcome !== "ok" ? "error" : ""},
    ms(r.seconds), ms(r.first_byte), {text: (r.counted ? "" : "~") + r.tokens_in, cls: "n"},
    {text: (r.counted ? "" : "~") + r.tokens_out, cls: "n"}, {text: r.handed, cls: "n"}, r.client]);
  totals("today-model", s.totals.today.model); totals("today-client", s.totals.today.client);
  totals("week-model", s.totals.week.model); totals("week-client", s.totals.week.client);
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
