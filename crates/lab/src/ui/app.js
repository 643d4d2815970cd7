// appnet lab page: the map, the live message-sequence chart (SSE from /events), the controls.
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";
const state = { hosts: [], byAddr: new Map(), events: [], paused: false, held: [], selected: null, proto: "", host: "" };
const $ = (id) => document.getElementById(id);

function el(name, attrs, text) {
  const e = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function ipOf(addr) {
  const i = addr.lastIndexOf(":");
  return i > 0 && addr.indexOf(".") >= 0 ? addr.slice(0, i) : addr;
}

// An endpoint's lifeline name: its lab name, or the name the map gives its address.
function nameOf(ep) {
  if (ep.host && !/^[0-9.:]+$/.test(ep.host)) return ep.host;
  const known = state.byAddr.get(ep.addr) || state.byAddr.get(ipOf(ep.addr));
  return known || ep.host || ep.addr;
}

function option(select, value, label) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label || value;
  select.appendChild(o);
}

// A pale colour of its own for every other role (mail, FTP, P2P, SIP, ...), stable across loads.
function roleColor(role) {
  let h = 0;
  for (const c of role) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${h}, 70%, 88%)`;
}

function drawMap() {
  const svg = $("map");
  svg.textContent = "";
  const nets = new Map();
  for (const h of state.hosts) {
    if (!nets.has(h.network)) nets.set(h.network, []);
    nets.get(h.network).push(h);
  }
  const colW = 230, rowH = 44, pad = 8;
  let x = pad, maxH = 0;
  const colors = { "root DNS server": "#fecaca", "TLD DNS server": "#fed7aa", "authoritative DNS server": "#fef08a",
    "local DNS server (resolver)": "#bbf7d0", "client host": "#bfdbfe", "web server": "#ddd6fe" };
  for (const [net, hosts] of nets) {
    const h = 26 + hosts.length * rowH;
    const g = el("g", { class: "net" });
    g.appendChild(el("rect", { x, y: pad, width: colW - 6, height: h, rx: 6 }));
    g.appendChild(el("text", { x: x + 6, y: pad + 16, "font-weight": "600" }, "network " + net));
    hosts.forEach((host, i) => {
      const y = pad + 24 + i * rowH;
      const hg = el("g", { class: "host", "data-host": host.name });
      hg.appendChild(el("rect", { x: x + 6, y, width: colW - 18, height: rowH - 6, rx: 4, fill: colors[host.role] || roleColor(host.role) }));
      hg.appendChild(el("text", { x: x + 12, y: y + 14, "font-weight": "600" }, host.name));
      hg.appendChild(el("text", { x: x + 12, y: y + 30 }, host.role + " · " + host.addr));
      hg.appendChild(el("title", {}, host.name + " (" + host.role + ") at " + host.addr));
      g.appendChild(hg);
    });
    svg.appendChild(g);
    x += colW;
    maxH = Math.max(maxH, h + 2 * pad);
  }
  svg.setAttribute("viewBox", `0 0 ${x + pad} ${maxH}`);
  svg.setAttribute("height", Math.min(maxH, 700));
}

function visible(e) {
  if (state.proto && e.protocol !== state.proto) return false;
  if (state.host && nameOf(e.from) !== state.host && nameOf(e.to) !== state.host) return false;
  return true;
}

let drawPending = false;
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; drawChart(); });
}

function drawChart() {
  const svg = $("chart");
  const focusedSeq = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.message : null;
  svg.textContent = "";
  const shown = state.events.filter(visible);
  const lanes = [];
  for (const e of shown) for (const n of [nameOf(e.from), nameOf(e.to)]) if (!lanes.includes(n)) lanes.push(n);
  const laneW = 150, top = 50, rowH = 34, left = 20;
  const width = Math.max(600, left * 2 + lanes.length * laneW);
  const height = top + shown.length * rowH + 30;
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const defs = el("defs");
  for (const [id, color] of [["arrow-DNS", "#1d4ed8"], ["arrow-HTTP", "#15803d"], ["arrow-other", "#444"]]) {
    const m = el("marker", { id, viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" });
    m.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", fill: color }));
    defs.appendChild(m);
  }
  svg.appendChild(defs);
  const xOf = (n) => left + lanes.indexOf(n) * laneW + laneW / 2;
  lanes.forEach((n) => {
    const g = el("g", { class: "head", "data-lifeline": n });
    g.appendChild(el("rect", { x: xOf(n) - laneW / 2 + 6, y: 6, width: laneW - 12, height: 26, rx: 4 }));
    g.appendChild(el("text", { x: xOf(n), y: 24, "text-anchor": "middle", "font-weight": "600" }, n));
    svg.appendChild(g);
    svg.appendChild(el("line", { class: "lifeline", x1: xOf(n), y1: 32, x2: xOf(n), y2: height - 10 }));
  });
  shown.forEach((e, i) => {
    const from = nameOf(e.from), to = nameOf(e.to);
    const y = top + i * rowH + 18;
    const x1 = xOf(from), x2 = xOf(to);
    const cls = ["DNS", "HTTP"].includes(e.protocol) ? e.protocol : "other";
    const g = el("g", {
      class: "msg " + cls + (state.selected === e.seq ? " selected" : ""),
      "data-message": String(e.seq), "data-from": from, "data-to": to, "data-protocol": e.protocol,
      tabindex: "0", role: "listitem", "aria-label": `${i + 1}. ${from} to ${to}: ${e.summary}`,
    });
    g.appendChild(el("rect", { class: "hit", x: 0, y: y - 16, width, height: rowH - 2 }));
    g.appendChild(el("line", { x1, y1: y, x2: x1 === x2 ? x2 + 30 : x2, y2: y, "marker-end": `url(#arrow-${cls})` }));
    const label = `${i + 1}. ${e.protocol} ${e.summary}`;
    const short = label.length > 110 ? label.slice(0, 107) + "…" : label;
    const lx = Math.min(x1, x2) + 4;
    g.appendChild(el("text", { class: "summary", x: lx, y: y - 4 }, short));
    if (e.latency_ms !== null) g.appendChild(el("text", { class: "latency", x: Math.max(x1, x2) - 4, y: y + 13, "text-anchor": "end" }, e.latency_ms.toFixed(1) + " ms"));
    g.appendChild(el("title", {}, label));
    g.addEventListener("click", () => select(e));
    g.addEventListener("keydown", (k) => {
      if (k.key === "Enter" || k.key === " ") { k.preventDefault(); select(e); }
      if (k.key === "ArrowDown" || k.key === "ArrowUp") {
        k.preventDefault();
        const all = [...svg.querySelectorAll(".msg")];
        const next = all[all.indexOf(g) + (k.key === "ArrowDown" ? 1 : -1)];
        if (next) next.focus();
      }
    });
    svg.appendChild(g);
  });
  if (focusedSeq !== null && focusedSeq !== undefined) {
    const again = svg.querySelector(`[data-message="${focusedSeq}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

function hexDump(hex) {
  if (!hex) return "(no bytes captured for this message)";
  const lines = [];
  for (let off = 0; off < hex.length / 2; off += 16) {
    const bytes = [], ascii = [];
    for (let i = off; i < Math.min(off + 16, hex.length / 2); i++) {
      const b = parseInt(hex.substr(i * 2, 2), 16);
      bytes.push(hex.substr(i * 2, 2));
      ascii.push(b >= 32 && b < 127 ? String.fromCharCode(b) : ".");
    }
    lines.push(off.toString(16).padStart(4, "0") + "  " + bytes.join(" ").padEnd(48) + " " + ascii.join(""));
  }
  return lines.join("\n");
}

function select(e) {
  state.selected = e.seq;
  $("detail-empty").hidden = true;
  $("detail-title").textContent = `${e.protocol}: ${nameOf(e.from)} (${e.from.addr}) → ${nameOf(e.to)} (${e.to.addr})`;
  const body = $("detail-fields").querySelector("tbody");
  body.textContent = "";
  const rows = [["Summary", e.summary]].concat(e.fields);
  if (e.latency_ms !== null) rows.push(["Latency", e.latency_ms.toFixed(3) + " ms"]);
  for (const [k, v] of rows) {
    const tr = document.createElement("tr");
    tr.dataset.field = k;
    const a = document.createElement("td"), b = document.createElement("td");
    a.textContent = k;
    b.textContent = v;
    tr.append(a, b);
    body.appendChild(tr);
  }
  $("detail-hex").textContent = hexDump(e.hex);
  for (const g of document.querySelectorAll("#chart .msg")) g.classList.toggle("selected", g.dataset.message === String(e.seq));
}

function refreshHostFilter() {
  const sel = $("filter-host");
  const have = new Set([...sel.options].map((o) => o.value));
  for (const e of state.events) for (const n of [nameOf(e.from), nameOf(e.to)]) if (!have.has(n)) { option(sel, n); have.add(n); }
  const psel = $("filter-proto");
  const protos = new Set([...psel.options].map((o) => o.value));
  for (const e of state.events) if (!protos.has(e.protocol)) { option(psel, e.protocol); protos.add(e.protocol); }
}

function post(url) {
  fetch(url, { method: "POST" }).then((r) => {
    $("status").textContent = r.ok ? "running: " + url : "refused (" + r.status + "): " + url;
  }, () => { $("status").textContent = "the lab did not answer"; });
}

function connect() {
  const es = new EventSource("/events");
  es.onopen = () => { $("status").textContent = "live: " + state.events.length + " messages"; };
  es.onerror = () => { $("status").textContent = "disconnected; retrying…"; };
  es.addEventListener("message", (m) => {
    const e = JSON.parse(m.data);
    if (state.paused) { state.held.push(e); return; }
    state.events.push(e);
    if (state.events.length > 5000) state.events.shift();
    $("status").textContent = "live: " + state.events.length + " messages";
    refreshHostFilter();
    scheduleDraw();
  });
  es.addEventListener("lagged", (m) => { $("status").textContent = m.data + " messages dropped (the page fell behind)"; });
}

function exportSvg() {
  const svg = $("chart").cloneNode(true);
  svg.insertBefore(el("style", {}, "text{font:12px sans-serif}.lifeline{stroke:#999;stroke-dasharray:4 3}.head rect{fill:#e8eef6;stroke:#557}.msg.DNS line{stroke:#1d4ed8}.msg.HTTP line{stroke:#15803d}.hit{fill:none}.latency{fill:#666}"), svg.firstChild);
  const blob = new Blob([new XMLSerializer().serializeToString(svg)], { type: "image/svg+xml" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = "appnet-lab-chart.svg";
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

async function start() {
  const lab = await (await fetch("/lab.json")).json();
  state.hosts = lab.hosts;
  for (const h of lab.hosts) { state.byAddr.set(h.addr, h.name); state.byAddr.set(ipOf(h.addr), h.name); }
  for (const s of lab.scenes) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = s.title;
    b.dataset.scene = s.n;
    b.addEventListener("click", () => post("/scene/" + s.n));
    $("scenes").appendChild(b);
  }
  for (const c of lab.clients) option($("resolve-from"), c.name, `${c.name} (${c.addr}, via ${c.resolver})`);
  $("resolve").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = "from=" + encodeURIComponent($("resolve-from").value) + "&name=" + encodeURIComponent($("resolve-name").value);
    post("/resolve?" + q);
  });
  $("fetch").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = "from=" + encodeURIComponent($("resolve-from").value) + "&url=" + encodeURIComponent($("fetch-url").value);
    post("/fetch?" + q);
  });
  $("filter-proto").addEventListener("change", (ev) => { state.proto = ev.target.value; scheduleDraw(); });
  $("filter-host").addEventListener("change", (ev) => { state.host = ev.target.value; scheduleDraw(); });
  $("pause").addEventListener("click", (ev) => {
    state.paused = !state.paused;
    ev.target.setAttribute("aria-pressed", String(state.paused));
    ev.target.textContent = state.paused ? "Resume" : "Pause";
    if (!state.paused) { state.events.push(...state.held); state.held = []; refreshHostFilter(); scheduleDraw(); }
  });
  $("clear").addEventListener("click", () => { state.events = []; state.selected = null; scheduleDraw(); });
  $("export").addEventListener("click", exportSvg);
  drawMap();
  connect();
}

start();
