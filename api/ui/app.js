// skewguard versions panel: plain JS, no build step. Every datum comes from /api/v1 with the
// bearer token kept in this tab's sessionStorage; nothing is stored elsewhere.
"use strict";
(() => {
  const KEY = "skewguard.token";
  const LIVE = "pending,staged,active,draining,failed";
  const POLL_MS = 2000, RPS_MS = 10000;
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  };
  let me = null, skew = 0, timer = null, lastRps = 0;
  const apps = new Map(); // "ns/app" -> {app, access, section, rows: Map(version -> row)}

  const token = () => sessionStorage.getItem(KEY);
  async function call(method, path, body) {
    // Without a token the call goes out bare: the API refuses it (401), unless the page is
    // served by `skewguard ui`, whose local proxy adds its user's credentials.
    const t = token();
    const opt = { method, headers: { "X-Skewguard-UI": "1" }, cache: "no-store" };
    if (t) opt.headers.Authorization = "Bearer " + t;
    if (body !== undefined) { opt.headers["Content-Type"] = "application/json"; opt.body = JSON.stringify(body); }
    const res = await fetch(path, opt);
    const data = await res.json().catch(() => ({}));
    if (!res.ok && res.status !== 202) throw Object.assign(new Error(data.message || res.statusText), { status: res.status, code: data.code });
    return data;
  }
  const enc = encodeURIComponent;
  const appPath = (a) => `/api/v1/apps/${enc(a.namespace)}/${enc(a.name)}`;

  // Durations and countdowns.
  function human(ms) {
    const neg = ms < 0; let s = Math.floor(Math.abs(ms) / 1000);
    const d = Math.floor(s / 86400); s %= 86400; const h = Math.floor(s / 3600); s %= 3600; const m = Math.floor(s / 60); s %= 60;
    const p = (n) => String(n).padStart(2, "0");
    const out = d ? `${d}d ${p(h)}h` : h ? `${h}h ${p(m)}m` : `${p(m)}:${p(s)}`;
    return neg ? "-" + out : out;
  }
  const now = () => Date.now() + skew;
  function countdown(iso) {
    if (!iso) return "—";
    const left = new Date(iso).getTime() - now();
    return left <= 0 ? "due" : "in " + human(left);
  }
  const ago = (iso) => iso ? human(now() - new Date(iso).getTime()) + " ago" : "—";

  function sparkline(points) {
    const w = 120, h = 24, svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`); svg.setAttribute("width", w); svg.setAttribute("height", h);
    svg.setAttribute("class", "spark"); svg.setAttribute("aria-hidden", "true");
    if (points && points.length > 1) {
      const t0 = new Date(points[0].at).getTime(), t1 = new Date(points[points.length - 1].at).getTime();
      const top = Math.max(...points.map((p) => p.rps), 0.001);
      const d = points.map((p, i) => `${i ? "L" : "M"}${((new Date(p.at).getTime() - t0) / Math.max(t1 - t0, 1) * (w - 2) + 1).toFixed(1)},${(h - 1 - p.rps / top * (h - 2)).toFixed(1)}`).join("");
      const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
      path.setAttribute("d", d); svg.append(path);
    }
    return svg;
  }

  // Confirmation dialog: says what will happen, returns the reason (or null when cancelled).
  function confirmAction(title, text, extra) {
    const dlg = $("confirm");
    $("confirm-title").textContent = title; $("confirm-text").textContent = text;
    $("confirm-extra").replaceChildren(...(extra ? [extra] : []));
    $("confirm-reason").value = "";
    return new Promise((resolve) => {
      dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok" ? $("confirm-reason").value : null), { once: true });
      dlg.returnValue = "";
      dlg.showModal();
      $("confirm-cancel").focus();
    });
  }
  const WHAT = {
    expire: (v, a) => `Version ${v.version} of ${a.namespace}/${a.name} (now ${v.state}) will be expired: its routes are removed, its pinned sessions fall through to the Active version and its workloads are retired. This cannot be undone; a new pod of the version starts a new life.`,
    promote: (v, a) => `Version ${v.version} of ${a.namespace}/${a.name} will become Active: new visitors get it, and the current Active version starts draining.`,
    approve: (v, a) => v.state === "failed" ? `The activation of version ${v.version} of ${a.namespace}/${a.name} will be retried.` : `Version ${v.version} of ${a.namespace}/${a.name} will become Active: new visitors get it, and the current Active version starts draining.`,
    reject: (v, a) => v.state === "failed" ? `Failed version ${v.version} of ${a.namespace}/${a.name} will be retired.` : `Staged version ${v.version} of ${a.namespace}/${a.name} will be rejected and expired; nobody is routed to it any more.`,
  };
  const ALLOWED = { expire: ["pending", "staged", "draining", "failed"], promote: ["draining"], approve: ["staged", "failed"], reject: ["staged", "failed"] };

  async function act(entry, v, action, button) {
    const reason = await confirmAction(`${action[0].toUpperCase() + action.slice(1)} version ${v.version}?`, WHAT[action](v, entry.app));
    button.focus();
    if (reason === null) return;
    setStatus(`${action} of ${v.version}…`);
    try {
      const out = await call("POST", `${appPath(entry.app)}/versions/${enc(v.version)}/${action}`, reason ? { reason } : {});
      setStatus(out.code === "action_pending" ? out.message : `${action} of ${v.version}: ${out.state || "done"}`);
    } catch (e) { setStatus(`${action} of ${v.version} refused: ${e.message}`, true); }
    refresh();
  }
  async function threshold(entry, button) {
    const input = el("input", { id: "threshold-age", type: "text", value: "2h", "aria-label": "older than (e.g. 2h, 7d)" });
    const box = el("p", {}, el("label", { for: "threshold-age", text: "Older than " }), input);
    const reason = await confirmAction(`Expire old versions of ${entry.app.name}?`,
      `Every live version of ${entry.app.namespace}/${entry.app.name} deployed longer ago than the age below will be expired, except the Active one.`, box);
    button.focus();
    if (reason === null) return;
    try {
      const out = await call("POST", `${appPath(entry.app)}/threshold`, { olderThan: input.value, reason: reason || undefined });
      setStatus(`threshold: ${out.results.length} version(s) acted on, ${out.failed} failed`);
    } catch (e) { setStatus(`threshold refused: ${e.message}`, true); }
    refresh();
  }

  // order puts nodes in parent in this order, moving only what is out of place: a moved node
  // would lose the keyboard focus of a button inside it.
  function order(parent, nodes) {
    nodes.forEach((n, i) => { if (parent.children[i] !== n) parent.insertBefore(n, parent.children[i] || null); });
  }
  function setStatus(msg, bad) { const s = $("status"); s.textContent = msg; s.classList.toggle("error", !!bad); }

  // One row per version, made once and updated in place (no layout shift, focus kept).
  function makeRow(entry, label) {
    const c = {};
    const tr = el("tr", { "data-version": label });
    const LABEL = { state: "State", since: "Since", service: "Service", pods: "Pods ready", rps: "Req/s", spark: "Traffic", pins: "Pinned by", timers: "Timers", actions: "Actions" };
    for (const k of ["version", "state", "since", "service", "pods", "rps", "spark", "pins", "timers", "actions"]) {
      c[k] = el(k === "version" ? "th" : "td", k === "version" ? { scope: "row", class: "c-" + k } : { class: "c-" + k, "data-label": LABEL[k] });
      tr.append(c[k]);
    }
    c.timers.append(c.grace = el("div"), c.next = el("div"), c.zeros = el("div"), c.maxa = el("div"));
    const row = { tr, c, v: null, tl: null, rps: null, audit: null };
    if (entry.access.update) {
      for (const a of Object.keys(ALLOWED)) {
        const b = el("button", { type: "button", class: "act act-" + a, "data-action": a, text: a });
        b.addEventListener("click", () => act(entry, row.v, a, b));
        c.actions.append(b);
      }
    }
    const ab = el("button", { type: "button", class: "audit", "aria-expanded": "false", text: "audit" });
    ab.addEventListener("click", () => toggleAudit(entry, row, ab));
    c.actions.append(ab);
    return row;
  }
  async function toggleAudit(entry, row, b) {
    if (row.audit) { row.audit.remove(); row.audit = null; b.setAttribute("aria-expanded", "false"); return; }
    const td = el("td", { colspan: "10", class: "audit-cell" }, "loading…");
    row.audit = el("tr", { class: "audit-row" }, td);
    row.tr.after(row.audit); b.setAttribute("aria-expanded", "true");
    try {
      const out = await call("GET", `${appPath(entry.app)}/versions/${enc(row.v.version)}/audit`);
      const ul = el("ol");
      for (const e of out.entries) ul.append(el("li", { text: `${new Date(e.at).toLocaleString()} · ${e.event}${e.toState ? " → " + e.toState : ""} · ${e.actor.name || e.actor.id || e.actor.type}${e.reason ? " · " + e.reason : ""}` }));
      td.replaceChildren(ul);
    } catch (e) { td.textContent = "audit: " + e.message; }
  }
  function paintRow(entry, row) {
    const v = row.v, c = row.c, a = entry.app, tl = row.tl;
    c.version.textContent = v.version;
    c.state.replaceChildren(el("span", { class: "badge s-" + v.state, text: v.state }));
    const since = v.state === "active" ? v.activeAt : v.state === "draining" ? v.drainingAt : v.state === "staged" ? v.stagedAt : v.state === "failed" ? v.failedAt : v.pendingAt;
    c.since.textContent = ago(since); c.since.title = since || "";
    c.service.textContent = v.serviceName ? `${v.serviceName}:${v.servicePort || ""}` : "—";
    // Ready of all the pods behind the version's Service (its EndpointSlices), when the API knows.
    const known = v.podsReady != null && v.podsTotal != null;
    c.pods.textContent = known ? `${v.podsReady}/${v.podsTotal}` : "—";
    c.pods.title = known ? `${v.podsReady} of ${v.podsTotal} pods ready` : "pods unknown";
    c.pods.classList.toggle("short", known && v.podsReady < v.podsTotal);
    const last = row.rps && row.rps.points.length ? row.rps.points[row.rps.points.length - 1].rps : null;
    c.rps.textContent = last === null ? (v.lastRps != null ? v.lastRps.toFixed(2) : "—") : last.toFixed(2);
    c.pins.textContent = v.state === "active" ? "default" : `cookie ${a.cookieName || "__plt_dpl"}=${v.version} · header x-deployment-id · ?dpl=${v.version}`;
    const dr = v.state === "draining" && tl;
    c.grace.textContent = dr ? `grace ends ${countdown(tl.graceEndsAt)}` : "";
    c.next.textContent = dr ? `next check ${countdown(tl.nextCheckAt)}` : "";
    c.zeros.textContent = dr ? `zero readings ${tl.zeroReadings == null ? "?" : tl.zeroReadings} of ${tl.zeroReadingsToExpire}` : "";
    c.maxa.textContent = dr ? `max alive ${countdown(tl.maxAliveAt)}` : "";
    for (const b of c.actions.querySelectorAll("button.act")) b.hidden = !ALLOWED[b.dataset.action].includes(v.state);
    if (me && me.temporalUi && !c.link) {
      c.link = el("a", { href: `${me.temporalUi}/namespaces/${enc(me.temporalNamespace || "default")}/workflows/${enc(v.workflowId || `skew/${a.namespace}/${a.name}/${v.version}`)}`, target: "_blank", rel: "noopener noreferrer", class: "wf", text: "workflow" });
      c.actions.append(c.link);
    }
  }
  function tick() { for (const e of apps.values()) for (const r of e.rows.values()) if (r.v) paintRow(e, r); }

  function makeSection(entry) {
    const a = entry.app;
    const h = el("h3", {}, `${a.namespace}/${a.name}`);
    const tools = el("div", { class: "app-tools" });
    if (entry.access.update) {
      const tb = el("button", { type: "button", class: "threshold", text: "expire old…" });
      tb.addEventListener("click", () => threshold(entry, tb)); tools.append(tb);
    } else tools.append(el("span", { class: "ro", text: "read only" }));
    const head = el("tr");
    for (const t of ["Version", "State", "Since", "Service", "Pods", "Req/s", "Traffic", "Pinned by", "Timers", "Actions"]) head.append(el("th", { scope: "col", text: t }));
    entry.tbody = el("tbody");
    entry.section = el("section", { class: "app", "data-app": `${a.namespace}/${a.name}`, "aria-label": `${a.namespace}/${a.name}` },
      el("div", { class: "app-head" }, h, tools), el("div", { class: "scroll" }, el("table", {}, el("thead", {}, head), entry.tbody)));
    return entry.section;
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const list = await call("GET", "/api/v1/apps");
      const sel = $("ns"), chosen = sel.value;
      const nss = [...new Set(list.apps.map((a) => a.namespace))].sort();
      if (sel.options.length - 1 !== nss.length || nss.some((n, i) => sel.options[i + 1].value !== n)) {
        sel.replaceChildren(el("option", { value: "", text: "all" }), ...nss.map((n) => el("option", { value: n, text: n })));
        sel.value = nss.includes(chosen) ? chosen : "";
      }
      const wanted = list.apps.filter((a) => !sel.value || a.namespace === sel.value);
      const keys = new Set(wanted.map((a) => `${a.namespace}/${a.name}`));
      for (const [k, e] of apps) if (!keys.has(k)) { e.section.remove(); apps.delete(k); }
      const withRps = Date.now() - lastRps >= RPS_MS;
      if (withRps) lastRps = Date.now();
      await Promise.all(wanted.map(async (a) => {
        const k = `${a.namespace}/${a.name}`;
        let e = apps.get(k);
        if (!e) {
          const access = await call("GET", `${appPath(a)}/access`).catch(() => ({ update: false }));
          e = { app: a, access, rows: new Map() }; apps.set(k, e); $("apps").append(makeSection(e));
        }
        e.app = a;
        const vs = await call("GET", `${appPath(a)}/versions?state=${LIVE}`);
        const seen = new Set();
        for (const v of vs.versions) {
          seen.add(v.version);
          let r = e.rows.get(v.version);
          if (!r) { r = makeRow(e, v.version); e.rows.set(v.version, r); }
          r.v = v;
          if (v.state === "draining") r.tl = await call("GET", `${appPath(a)}/versions/${enc(v.version)}/timeline`).catch(() => r.tl);
          else r.tl = null;
          if (r.tl && r.tl.now) skew = new Date(r.tl.now).getTime() - Date.now();
          if (withRps || !r.rps) {
            call("GET", `${appPath(a)}/versions/${enc(v.version)}/rps?window=15m`).then((s) => {
              r.rps = s; r.c.spark.replaceChildren(sparkline(s.points)); paintRow(e, r);
            }).catch(() => { if (!r.c.spark.firstChild) r.c.spark.replaceChildren(sparkline([])); });
          }
          paintRow(e, r);
        }
        for (const [lbl, r] of e.rows) if (!seen.has(lbl)) { r.tr.remove(); if (r.audit) r.audit.remove(); e.rows.delete(lbl); }
        order(e.tbody, vs.versions.flatMap((v) => { const r = e.rows.get(v.version); return r.audit ? [r.tr, r.audit] : [r.tr]; }));
      }));
      order($("apps"), wanted.map((a) => apps.get(`${a.namespace}/${a.name}`)).filter(Boolean).map((e) => e.section));
      $("status").classList.remove("error");
      if (!$("status").textContent || $("status").dataset.auto) { $("status").textContent = `updated ${new Date().toLocaleTimeString()}`; $("status").dataset.auto = "1"; }
    } catch (e) {
      if (e.status === 401) { signOut("Your token was refused (expired or revoked): sign in again."); return; }
      setStatus("update failed: " + e.message, true);
    }
    timer = setTimeout(refresh, POLL_MS);
  }

  function signOut(msg) {
    clearTimeout(timer); sessionStorage.removeItem(KEY); me = null; $("logout").hidden = true;
    for (const e of apps.values()) e.section.remove();
    apps.clear();
    $("panel").hidden = true; $("login").hidden = false; $("logout").hidden = true; $("who").textContent = "";
    $("login-error").textContent = msg || "";
    $("token").focus();
  }
  async function start() {
    try { me = await call("GET", "/api/v1/whoami"); }
    catch (e) {
      if (e.status === 401 && !token()) { signOut(); return; } // nobody signed in yet
      signOut(e.status === 401 ? "This token was refused by the cluster." : "Sign-in failed: " + e.message);
      return;
    }
    $("who").textContent = "signed in as " + me.username;
    $("login").hidden = true; $("panel").hidden = false; $("logout").hidden = !token();
    refresh();
  }
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim()); $("token").value = "";
    start();
  });
  $("logout").addEventListener("click", () => signOut());
  $("ns").addEventListener("change", () => { lastRps = 0; refresh(); });
  setInterval(tick, 1000);
  start();
})();
