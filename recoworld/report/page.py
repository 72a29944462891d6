"""The viewer's single page: hand-written HTML, CSS and JavaScript, no external resources.

It asks the JSON endpoints of :mod:`recoworld.report.viewer` for one page of users at a time
and for one session at a time, and builds the DOM with ``textContent`` (never ``innerHTML``
with run data). The location hash (``#arm=…&user=…&session=…&step=…``) holds the state, so a
session step can be linked to. Element ids and ``data-*`` attributes are the contract the
browser test (tests/test_viewer_browser.py) reads.
"""

PAGE = (
    r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>RecoWorld viewer</title>
<style>
:root { --fg:#1d2330; --muted:#5b6472; --line:#d9dee7; --soft:#f4f6fa; --accent:#0b57d0; """
    r"""--cur:#fff4c2; }
* { box-sizing:border-box; }
body { margin:0; font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu """
    r"""Sans",sans-serif; color:var(--fg); }
header { background:#1d2330; color:#fff; padding:10px 18px; display:flex; gap:18px; """
    r"""align-items:baseline; }
header h1 { font-size:17px; margin:0; } header span { color:#c9d1de; }
#layout { display:grid; grid-template-columns:380px 1fr; gap:0; height:calc(100vh - 44px); }
#left { border-right:1px solid var(--line); padding:10px; overflow:auto; }
#right { padding:10px 16px; overflow:auto; }
.controls { display:flex; flex-wrap:wrap; gap:6px; align-items:center; margin-bottom:8px; }
select, input, button { font:inherit; padding:3px 6px; }
button { cursor:pointer; border:1px solid #b9c2d0; background:#fff; border-radius:4px; }
button:disabled { opacity:.4; cursor:default; }
table { border-collapse:collapse; width:100%; }
th, td { border-bottom:1px solid var(--line); padding:3px 6px; text-align:right; }
th { background:var(--soft); position:sticky; top:0; }
td.l, th.l { text-align:left; }
#users tbody tr { cursor:pointer; } #users tbody tr:hover { background:var(--soft); }
#users tbody tr.sel { background:#e3ecfd; }
#pager { display:flex; gap:6px; align-items:center; margin-top:6px; }
.muted { color:var(--muted); }
#user-title { font-size:17px; margin:4px 0; }
#persona { margin:2px 0 8px; display:flex; flex-wrap:wrap; gap:2px 14px; }
#persona .k { color:var(--muted); margin-right:4px; }
#sessions { list-style:none; padding:0; margin:0 0 10px; display:flex; flex-wrap:wrap; gap:6px; }
#sessions li { border:1px solid var(--line); border-radius:6px; padding:4px 8px; """
    r"""cursor:pointer; max-width:330px; font-size:12px; }
#sessions li.sel { border-color:var(--accent); background:#eef3fe; }
#replay h3 { margin:6px 0; }
#stepbar { display:flex; gap:6px; align-items:center; margin:6px 0; }
#step-label { font-weight:600; margin-left:8px; }
#slate td.action { font-weight:600; }
#slate tr.pending td { color:#aab1bd; } #slate tr.pending td.action { font-weight:400; }
#slate tr.current { background:var(--cur); }
#slate .creator { background:#ffe0b3; border-radius:3px; padding:0 4px; font-size:11px; """
    r"""margin-left:4px; }
.a-skip { color:#7a8290; } .a-click { color:#b36b00; } .a-watch { color:#0a7a3f; """
    r"""} .a-rate { color:#0b57d0; }
#panels { display:grid; grid-template-columns:minmax(260px, 340px) 1fr; gap:16px; margin-top:8px; }
#mindset .row { display:grid; grid-template-columns:90px 1fr 48px; gap:6px; align-items:center; """
    r"""margin:3px 0; }
#mindset .bar { background:var(--soft); height:12px; border-radius:6px; overflow:hidden; }
#mindset .fill { height:100%; background:#0b57d0; }
#mindset .fill.fatigue { background:#b3261e; } #mindset .fill.boredom { background:#8a6d00; """
    r"""} #mindset .fill.curiosity { background:#0a7a3f; }
#trail { display:flex; align-items:flex-end; gap:2px; height:48px; """
    r"""border-bottom:1px solid var(--line); margin-top:8px; }
#trail div { width:6px; background:#8fb2f0; } #trail div.now { background:#0b57d0; }
#after { border-left:4px solid var(--line); padding:6px 10px; margin-top:8px; min-height:40px; }
#after.instructed { border-color:#b36b00; background:#fff8ec; }
#after.left { border-color:#b3261e; background:#fdf0ef; }
#instruction { font-style:italic; } #leave { font-weight:600; color:#b3261e; }
#feeling { font-style:italic; margin-top:6px; }
#error { color:#b3261e; font-weight:600; }
details { margin-top:8px; } pre { white-space:pre-wrap; background:var(--soft); padding:6px; """
    r"""max-height:240px; overflow:auto; }
</style></head>
<body>
<header><h1>RecoWorld viewer</h1><span id="run-title">loading…</span></header>
<div id="layout">
<div id="left">
  <div class="controls">
    <label>arm <select id="arm"></select></label>
    <label>segment <select id="segment"><option value="all">all</option></select></label>
    <label><input type="checkbox" id="instructed"> wrote an instruction</label>
  </div>
  <div class="controls">
    <input id="goto-user" type="number" min="0" placeholder="user id" style="width:110px">
    <button id="goto">open user</button>
  </div>
  <table id="users"><thead><tr><th>user</th><th class="l">segment</th><th>sessions</th><th>"""
    r"""turns</th><th>clicks</th><th>instr.</th></tr></thead><tbody></tbody></table>
  <div id="pager"><button id="prev-page">◀</button><span id="page-label" """
    r"""class="muted"></span><button id="next-page">▶</button></div>
</div>
<div id="right">
  <div id="error"></div>
  <div id="user-view" hidden>
    <h2 id="user-title"></h2>
    <div id="persona"></div>
    <ul id="sessions"></ul>
    <ul id="social-timeline"></ul>
  </div>
  <div id="replay" hidden>
    <h3 id="session-title" title="Sessions, turns and slate rows count from 1 here; the """
    r"""URL, the API and the Parquet files count them from 0 (Session 1 = session 0)"></h3>
    <div id="session-summary" class="muted"></div>
    <div id="stepbar">
      <button id="first" title="first step (Home)">« first</button><button id="prev" """
    r"""title="previous step (←)">◀ prev</button>
      <button id="next" title="next step (→)">next ▶</button><button id="last" title="last step """
    r"""(End)">last »</button>
      <button id="play">play</button><span id="step-label"></span>
    </div>
    <table id="slate"><thead><tr><th>#</th><th class="l">item</th><th class="l">tags</th><th """
    r"""class="l">decision</th><th>watch</th><th>rating</th><th>satisfaction</th></tr></thead>"""
    r"""<tbody></tbody></table>
    <div id="panels">
      <div><div id="mindset"></div><div id="trail" title="satisfaction after each item so """
    r"""far"></div><div id="feeling"></div></div>
      <div id="after"><div id="instruction"></div><div id="leave"></div></div>
    </div>
    <details id="llm" hidden><summary>language-model calls of this session</summary><div """
    r"""id="llm-calls"></div></details>
  </div>
</div>
</div>
<script>
"use strict";
const S = { run:null, arm:null, segment:"all", instructed:false, offset:0, limit:50, total:0,
            user:null, detail:null, session:null, replay:null, steps:[], step:0, timer:null };
const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); """
    r"""else e[k] = v;
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? "" """
    r""": String(k)));
  return e;
}
const f3 = (v) => v == null ? "–" : Number(v).toFixed(3);
const f2 = (v) => v == null ? "–" : Number(v).toFixed(2);
async function api(path, params) {
  const q = new URLSearchParams(params || {}).toString();
  const r = await fetch("/api/" + path + (q ? "?" + q : ""));
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
function showError(e) { $("error").textContent = e ? String(e.message || e) : ""; }

function writeHash() {
  const h = new URLSearchParams({ arm:S.arm });
  if (S.user != null) h.set("user", S.user);
  if (S.session != null) { h.set("session", S.session); h.set("step", S.step); }
  history.replaceState(null, "", "#" + h.toString());
}

async function init() {
  try {
    S.run = await api("run");
    $("run-title").textContent = `${S.run.study} · run ${S.run.run_id} · ${S.run.world} · """
    r"""${S.run.users_per_arm.toLocaleString()} users per arm · ${S.run.brain} brain · """
    r"""${S.run.recommender}`;
    for (const a of S.run.arms) $("arm").append(el("option", { value:a }, a));
    for (const s of S.run.segments) $("segment").append(el("option", { value:s }, s));
    const h = new URLSearchParams(location.hash.slice(1));
    S.arm = S.run.arms.includes(h.get("arm")) ? h.get("arm") : S.run.arms[0];
    $("arm").value = S.arm;
    await loadUsers();
    if (h.get("user") != null) {
      await openUser(Number(h.get("user")));
      if (h.get("session") != null) await openSession(Number(h.get("session")), """
    r"""Number(h.get("step") || 0));
    }
    document.body.dataset.ready = "1";
  } catch (e) { showError(e); }
}

async function loadUsers() {
  const p = await api("users", { arm:S.arm, segment:S.segment, instructed:S.instructed ? 1 : 0, """
    r"""offset:S.offset, limit:S.limit });
  S.total = p.total;
  const tb = $("users").tBodies[0]; tb.replaceChildren();
  for (const u of p.users) {
    const tr = el("tr", { "data-user":u.user }, el("td", {}, u.user), el("td", { class:"l" }, """
    r"""u.segment), el("td", {}, u.sessions),
                  el("td", {}, u.turns), el("td", {}, u.clicks), el("td", {}, u.instructions));
    if (u.user === S.user) tr.classList.add("sel");
    tr.addEventListener("click", () => openUser(u.user));
    tb.append(tr);
  }
  const last = Math.min(S.offset + S.limit, S.total);
  $("page-label").textContent = S.total ? `${S.offset + 1}–${last} of """
    r"""${S.total.toLocaleString()}` : "no users";
  $("prev-page").disabled = S.offset === 0;
  $("next-page").disabled = last >= S.total;
}

async function openUser(user) {
  showError(null);
  try {
    const d = await api("user", { arm:S.arm, user });
    S.user = user; S.detail = d; S.session = null; stop();
    for (const tr of $("users").tBodies[0].rows) tr.classList.toggle("sel", """
    r"""Number(tr.dataset.user) === user);
    $("user-view").hidden = false; $("replay").hidden = true;
    $("user-title").textContent = `User ${user} · ${d.segment} · arm ${d.arm}`;
    const facts = [];
    for (const [k, v] of Object.entries(d.persona)) {
      if (k === "user" || k === "segment" || v == null || v === "") continue;
      facts.push(el("span", { "data-field":k }, el("span", { class:"k" }, k.replace(/_/g, " ")),
        Array.isArray(v) ? v.join(", ") : (typeof v === "number" && !Number.isInteger(v) ? f2(v) """
    r""": v)));
    }
    $("persona").replaceChildren(...facts);
    const ul = $("sessions"); ul.replaceChildren();
    for (const s of d.sessions) {
      const li = el("li", { "data-session":s.session },
        el("b", {}, `Session ${s.session + 1}`), el("span", { class:"muted" }, """
    r"""` · day ${f2(s.day)} · ${s.turns} turn${s.turns === 1 ? "" : "s"}${s.left_early ? " · """
    r"""left early" : ""}${s.returned ? (s.session + 1 < S.run.sessions ? " · came back" : " · """
    r"""would come back") : ""}`),
        el("div", {}, s.summary));
      li.addEventListener("click", () => openSession(s.session, 0));
      ul.append(li);
    }
    const tl = $("social-timeline"); tl.replaceChildren();  // posts, chats (sent, read), searches
    for (const e of (d.social || [])) {
      const who = e.other == null ? "" : (e.kind.endsWith(" received") ? ` from user ${e.other}` """
    r""": ` to user ${e.other}`);
      const where = e.session == null ? "" : ` (session ${e.session + 1}, turn ${e.turn + 1})`;
      tl.append(el("li", { "data-kind":e.kind }, el("b", {}, `Day ${e.round + 1} · ${e.kind}`),
        el("span", { class:"muted" }, `${who}${where}`), el("div", {}, e.text),
        el("div", { class:"muted" }, e.items.join(", "))));
    }
    writeHash();
  } catch (e) { showError(e); }
}

async function openSession(session, step) {
  showError(null);
  try {
    const r = await api("session", { arm:S.arm, user:S.user, session });
    S.session = session; S.replay = r; S.steps = [];
    r.turns.forEach((t, ti) => { t.items.forEach((_, pi) => S.steps.push({ ti, pi })); """
    r"""S.steps.push({ ti, pi:null }); });
    for (const li of $("sessions").children) li.classList.toggle("sel", """
    r"""Number(li.dataset.session) === session);
    $("replay").hidden = false;
    $("session-title").textContent = `Session ${session + 1} of user ${r.user} (arm ${r.arm}): """
    r"""${r.turns.length} slate${r.turns.length === 1 ? "" : "s"}`;
    $("session-summary").textContent = r.summary ? r.summary.summary : "";
    renderLlm(r);
    show(Math.max(0, Math.min(step || 0, S.steps.length - 1)));
  } catch (e) { showError(e); }
}

function mindsetRow(name, v) {
  const row = el("div", { class:"row", "data-metric":name }, el("span", {}, name),
    el("div", { class:"bar" }, el("div", { class:"fill " + name })), el("span", """
    r"""{ class:"value" }, f3(v)));
  row.querySelector(".fill").style.width = `${Math.max(0, Math.min(1, v)) * 100}%`;
  return row;
}

function show(k) {
  S.step = k;
  const { ti, pi } = S.steps[k];
  const turn = S.replay.turns[ti];
  const upto = pi == null ? turn.items.length - 1 : pi;
  const nTurns = S.replay.turns.length;
  $("step-label").textContent = pi == null
    ? `turn ${ti + 1} of ${nTurns} · after the slate`
    : `turn ${ti + 1} of ${nTurns} · item ${pi + 1} of ${turn.items.length}`;
  $("step-label").dataset.turn = turn.turn; """
    r"""$("step-label").dataset.position = pi == null ? "end" : turn.items[pi].position;
  const tb = $("slate").tBodies[0]; tb.replaceChildren();
  turn.items.forEach((it, j) => {
    const seen = j <= upto;
    const name = el("td", { class:"l item" }, it.title);
    if (it.title !== it.item_id) name.append(el("span", { class:"muted" }, ` (${it.item_id})`));
    if (it.is_creator_item) name.append(el("span", { class:"creator", title:it.creator }, """
    r""""creator"));
    const tr = el("tr", { "data-position":it.position, """
    r"""class: seen ? (j === pi ? "current" : "") : "pending" },
      el("td", {}, it.position + 1), name, el("td", { class:"l" }, it.tags.join(", ")),
      el("td", { class:"l action " + (seen ? "a-" + it.action : "") }, seen ? it.action : "…"),
      el("td", { class:"watch" }, seen && it.action !== "skip" ? f2(it.watch_fraction) : ""),
      el("td", { class:"rating" }, seen && it.rating != null ? it.rating.toFixed(0) : ""),
      el("td", { class:"satisfaction" }, seen ? f3(it.satisfaction) : ""));
    tb.append(tr);
  });
  const now = turn.items[upto];
  $("mindset").replaceChildren(el("div", { class:"muted" }, """
    r"""pi == null ? "mindset after the slate" : "mindset after this item"),
    ...["satisfaction", "fatigue", "boredom", "curiosity"].map((m) => mindsetRow(m, now[m])));
  $("feeling").textContent = now.feeling ? `“${now.feeling}”` : "";
  const trail = $("trail"); trail.replaceChildren();
  for (let i = 0; i <= k; i++) {
    const s = S.steps[i]; if (s.pi == null) continue;
    const it = S.replay.turns[s.ti].items[s.pi];
    const bar = el("div", { class: i === k || (pi == null && i === k - 1) ? "now" : "" }); """
    r"""bar.style.height = `${Math.max(2, it.satisfaction * 46)}px`; trail.append(bar);
  }
  const after = $("after"); after.className = "";
  if (pi == null) {
    const last = ti === nTurns - 1;
    $("instruction").textContent = turn.instruction ? `Instruction to the recommender: """
    r"""“${turn.instruction}”` : "No instruction after this slate.";
    $("leave").textContent = turn.left_after ? "The user left after this slate." : (last ? "End """
    r"""of the session: the turn budget is spent." : "");
    if (turn.instruction) after.classList.add("instructed");
    if (turn.left_after) after.classList.add("left");
  } else {
    $("instruction").textContent = ""; $("leave").textContent = "";
  }
  $("first").disabled = $("prev").disabled = k === 0;
  $("next").disabled = $("last").disabled = k === S.steps.length - 1;
  writeHash();
}

function renderLlm(r) {
  $("llm").hidden = !r.llm_calls.length;
  const box = $("llm-calls"); box.replaceChildren();
  for (const c of r.llm_calls) {
    box.append(el("details", {}, el("summary", {}, """
    r"""`turn ${c.turn + 1} · ${c.purpose} · ${c.parse_status} · ${c.tokens_in}+${c.tokens_out} """
    r"""tokens · ${f2(c.latency_s)} s`),
      el("pre", {}, c.prompt), el("pre", {}, c.completion), c.error ? el("div", """
    r"""{ class:"muted" }, c.error) : ""));
  }
}

function stop() { if (S.timer) { clearInterval(S.timer); S.timer = null; """
    r"""$("play").textContent = "play"; } }
function step(d) { if (S.replay) show(Math.max(0, Math.min(S.steps.length - 1, S.step + d))); }

$("arm").addEventListener("change", async (e) => {
  S.arm = e.target.value; S.offset = 0; await loadUsers();
  if (S.user != null) { const s = S.session, k = S.step; await openUser(S.user); """
    r"""if (s != null) await openSession(s, k); }
});
$("segment").addEventListener("change", (e) => { S.segment = e.target.value; S.offset = 0; """
    r"""loadUsers().catch(showError); });
$("instructed").addEventListener("change", (e) => { S.instructed = e.target.checked; """
    r"""S.offset = 0; loadUsers().catch(showError); });
$("prev-page").addEventListener("click", () => { S.offset = Math.max(0, S.offset - S.limit); """
    r"""loadUsers().catch(showError); });
$("next-page").addEventListener("click", () => { S.offset += S.limit; """
    r"""loadUsers().catch(showError); });
$("goto").addEventListener("click", () => { const v = $("goto-user").value; """
    r"""if (v !== "") openUser(Number(v)); });
$("goto-user").addEventListener("keydown", (e) => { if (e.key === "Enter") $("goto").click(); });
$("first").addEventListener("click", () => { stop(); show(0); });
$("prev").addEventListener("click", () => { stop(); step(-1); });
$("next").addEventListener("click", () => { stop(); step(1); });
$("last").addEventListener("click", () => { stop(); show(S.steps.length - 1); });
$("play").addEventListener("click", () => {
  if (S.timer) return stop();
  $("play").textContent = "pause";
  S.timer = setInterval(() => { if (S.step >= S.steps.length - 1) stop(); else step(1); }, 700);
});
document.addEventListener("keydown", (e) => {
  if (!S.replay || e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
  if (e.key === "ArrowRight") { stop(); step(1); } else if (e.key === "ArrowLeft") { stop(); """
    r"""step(-1); }
  else if (e.key === "Home") { stop(); show(0); } else if (e.key === "End") { stop(); """
    r"""show(S.steps.length - 1); }
});
init();
</script>
</body></html>
"""
)
