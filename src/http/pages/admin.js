// feiyan dashboard (/admin): login, live sessions in scope with their interaction (the
// host panel of chat-host.js, same API as the publish page, with the login's token),
// figures, chart, rankings, sessions. Served at /assets/admin.js.
"use strict";
const KIND = { lecture: "理论宣讲", film_class: "电影党史课", other: "其他" };
const LEVELS = ["city", "center", "institute", "station"];
let token = sessionStorage.getItem("feiyan_token");
let tree = [];
let path = [];          // [{level, id, name}] below the city
let home = [];          // the top of what this account may see

const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") e.onclick = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
function showError(text) { $("error").textContent = text || ""; }

async function api(url, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  opts.headers.Authorization = "Bearer " + token;
  const r = await fetch(url, opts);
  if (r.status === 401) { logout(); throw new Error("请重新登录"); }
  if (!r.ok) throw new Error((await r.text()).trim());
  return r;
}
function logout() { sessionStorage.removeItem("feiyan_token"); token = null; $("app").classList.add("hidden"); $("login").classList.remove("hidden"); }

$("loginForm").onsubmit = async (ev) => {
  ev.preventDefault();
  showError("");
  const r = await fetch("/api/login", { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: $("user").value, password: $("pass").value }) });
  if (!r.ok) { showError(r.status === 429 ? "尝试次数过多，请稍后再试。" : "用户名或密码错误。"); return; }
  token = (await r.json()).token;
  sessionStorage.setItem("feiyan_token", token);
  start();
};

function scopeFilter() {
  const last = path[path.length - 1];
  return last ? { level: last.level, id: last.id } : {};
}
function params(extra) {
  const p = new URLSearchParams(Object.assign({}, scopeFilter(), extra));
  if ($("from").value) p.set("from", $("from").value);
  if ($("to").value) p.set("to", $("to").value);
  if ($("kind").value) p.set("kind", $("kind").value);
  return p;
}
async function table(kind, extra) { return (await api(`/api/stats/${kind}?` + params(extra))).json(); }
function csvLink(a, kind, extra, name) {
  a.onclick = async () => {
    try {
      const blob = await (await api(`/api/stats/${kind}?` + params(Object.assign({ format: "csv" }, extra)))).blob();
      const url = URL.createObjectURL(blob);
      el("a", { href: url, download: name }).click();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (e) { showError(e.message); }
  };
}

function findNode(level, id) {
  for (const c of tree) {
    if (level === "center" && c.id === id) return [c];
    for (const i of c.children || []) {
      if (level === "institute" && i.id === id) return [c, i];
      for (const s of i.children || []) if (level === "station" && s.id === id) return [c, i, s];
    }
  }
  return [];
}

async function start() {
  $("login").classList.add("hidden");
  try {
    const me = await (await api("/api/me")).json();
    $("who").textContent = me.username + " ";
    $("who").append(el("a", { onclick: async () => { await api("/api/logout", { method: "POST" }).catch(() => {}); logout(); } }, "退出"));
    tree = await (await api("/api/admin/hierarchy")).json();
    const nodes = me.scope.role === "city" ? [] : findNode(me.scope.role, me.scope.id);
    home = nodes.map((n, k) => ({ level: LEVELS[k + 1], id: n.id, name: n.name }));
    path = home.slice();
    const today = new Date(Date.now() + 8 * 3600e3);
    if (!$("to").value) $("to").value = today.toISOString().slice(0, 10);
    if (!$("from").value) $("from").value = new Date(today - 365 * 86400e3).toISOString().slice(0, 10);
    $("app").classList.remove("hidden");
    loadLive();
    await refresh();
  } catch (e) { showError(e.message); }
}

// Live sessions this account may moderate: the live channels whose host view answers it.
let hostPanel = null;
let hostChannel = null;
async function loadLive() {
  if (!token) return;
  let live = [];
  try { live = await (await fetch("/api/live")).json(); } catch (e) { return; }
  const mine = [];
  for (const l of live) {
    const r = await fetch(`/api/interaction/${encodeURIComponent(l.channel)}/host`,
      { headers: { Authorization: "Bearer " + token } }).catch(() => null);
    if (r && r.ok) mine.push(l);
  }
  const box = $("liveList");
  box.textContent = "";
  if (!mine.length) box.append("范围内现在没有直播。");
  for (const l of mine) {
    const a = el("a", { class: "live-link", "data-channel": l.channel, onclick: () => openHost(l.channel) },
      `${l.station} · ${l.title || "直播"}（${l.viewers} 人在看）`);
    if (l.channel === hostChannel) a.classList.add("current");
    box.append(a, " ");
  }
  if (hostChannel && !mine.some((l) => l.channel === hostChannel)) openHost(null);
  if (!hostChannel && mine.length === 1) openHost(mine[0].channel);
}
function openHost(channel) {
  if (hostPanel) hostPanel.stop();
  hostPanel = null;
  hostChannel = channel;
  const box = $("liveHost");
  box.textContent = "";
  box.className = "";
  for (const a of document.querySelectorAll(".live-link")) a.classList.toggle("current", a.dataset.channel === channel);
  if (channel && window.feiyanChatHost) {
    box.setAttribute("data-channel", channel);
    hostPanel = window.feiyanChatHost.mount(box, channel);
  }
}
setInterval(loadLive, 10000);

function drill(level, id, name) {
  const depth = LEVELS.indexOf(level);
  path = path.slice(0, depth - 1);
  path.push({ level, id, name });
  refresh();
}

function crumbs() {
  const box = $("crumbs");
  box.textContent = "";
  if (home.length === 0) box.append(el("a", { onclick: () => { path = []; refresh(); } }, "全市"), " › ");
  path.forEach((p, k) => {
    if (k >= home.length - 1) box.append(el("a", { onclick: () => { path = path.slice(0, k + 1); refresh(); } }, p.name), " › ");
  });
}

const fmt = (n) => Number(n).toLocaleString("zh-CN");

function figures(row) {
  const box = $("figures");
  box.textContent = "";
  const r = row || { sessions: 0, online_viewers: 0, in_person: 0, total_audience: 0, viewer_minutes: 0, peak_viewers: 0,
                     replay_viewers: 0, replay_minutes: 0, messages: 0, questions: 0, questions_answered: 0, likes: 0, checkins: 0 };
  // Replay figures (回看) stand beside the live ones; the total audience is live only.
  for (const [label, value] of [["场次", r.sessions], ["总受众人次", r.total_audience], ["线上观看人次", r.online_viewers],
                                ["现场人数", r.in_person], ["观看分钟", Math.round(r.viewer_minutes)], ["最高同时在线", r.peak_viewers],
                                ["回看人次", r.replay_viewers], ["回看分钟", Math.round(r.replay_minutes)],
                                ["互动消息", r.messages], ["提问（已答）", `${fmt(r.questions)}（${fmt(r.questions_answered)}）`], ["点赞", r.likes], ["线上签到", r.checkins]]) {
    box.append(el("div", { class: "figure" }, el("b", {}, typeof value === "string" ? value : fmt(value)), el("span", {}, label)));
  }
}

// A small hand-written SVG chart: stacked bars (online + in person) per period.
function chart(rows) {
  const W = 1100, H = 260, L = 50, B = 40, T = 10;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", "100%");
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  const max = Math.max(1, ...rows.map((r) => r.total_audience));
  const n = Math.max(rows.length, 1);
  const bw = (W - L - 10) / n;
  for (let k = 0; k <= 4; k++) {
    const y = T + (H - T - B) * (1 - k / 4);
    add("line", { x1: L, x2: W - 10, y1: y, y2: y, stroke: "#eee" });
    add("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, fmt(Math.round(max * k / 4)));
  }
  const every = Math.ceil(n / 16);
  rows.forEach((r, k) => {
    const x = L + k * bw + bw * 0.1, w = Math.max(bw * 0.8, 1);
    const hOnline = (H - T - B) * r.online_viewers / max;
    const hPerson = (H - T - B) * r.in_person / max;
    const base = H - B;
    const a = add("rect", { x, y: base - hOnline, width: w, height: hOnline, fill: "#e53935" });
    add("rect", { x, y: base - hOnline - hPerson, width: w, height: hPerson, fill: "#ffb300" });
    a.append(document.createElementNS(ns, "title"));
    a.lastChild.textContent = `${r.period}: 线上 ${r.online_viewers}，现场 ${r.in_person}`;
    if (k % every === 0) add("text", { x: x + w / 2, y: H - B + 14, "text-anchor": "middle" }, r.period);
  });
  add("rect", { x: L, y: H - 16, width: 10, height: 10, fill: "#e53935" });
  add("text", { x: L + 14, y: H - 7 }, "线上观看人次");
  add("rect", { x: L + 110, y: H - 16, width: 10, height: 10, fill: "#ffb300" });
  add("text", { x: L + 124, y: H - 7 }, "现场人数");
  $("chart").textContent = "";
  $("chart").append(svg);
}

function rankTable(rows, childLevel) {
  const t = el("table", {}, el("tr", {}, ...["名称", "场次", "线上", "现场", "总受众人次", "观看分钟", "回看人次", "回看分钟", "互动消息", "提问（已答）", "点赞", "线上签到"].map((h) => el("th", {}, h))));
  rows.sort((a, b) => b.total_audience - a.total_audience);
  for (const r of rows.slice(0, 50)) {
    const name = childLevel ? el("a", { onclick: () => drill(childLevel, r.group_id, r.group_name) }, r.group_name) : r.group_name;
    t.append(el("tr", {}, el("td", {}, name), el("td", {}, fmt(r.sessions)), el("td", {}, fmt(r.online_viewers)),
      el("td", {}, fmt(r.in_person)), el("td", {}, fmt(r.total_audience)), el("td", {}, fmt(Math.round(r.viewer_minutes))),
      el("td", {}, fmt(r.replay_viewers)), el("td", {}, fmt(Math.round(r.replay_minutes))),
      el("td", {}, fmt(r.messages)), el("td", {}, `${fmt(r.questions)}（${fmt(r.questions_answered)}）`),
      el("td", {}, fmt(r.likes)), el("td", {}, fmt(r.checkins))));
  }
  return t;
}

function terminals(row) {
  const box = $("terminals");
  box.textContent = "";
  if (!row) return;
  const t = row.terminals, sum = Math.max(1, t.mobile + t.pc + t.tv + t.other);
  for (const [label, v, color] of [["手机", t.mobile, "#e53935"], ["电脑", t.pc, "#1e88e5"], ["电视", t.tv, "#43a047"], ["其他", t.other, "#9e9e9e"]]) {
    // Colour and length through the CSSOM: a style="" attribute would break the CSP.
    const bar = el("span", { class: "term-bar" });
    bar.style.background = color;
    bar.style.width = `${Math.round(300 * v / sum)}px`;
    box.append(el("div", {}, el("span", { class: "term-label" }, label), bar,
      ` ${fmt(v)} (${Math.round(100 * v / sum)}%)`));
  }
}

async function sessions(atStation) {
  const rows = await table("sessions", { limit: 200 });
  const topics = atStation ? await (await api("/api/admin/topics")).json() : [];
  const head = ["日期", "站", "类型", "标题", "主讲人", "影片", "时长(分)", "线上", "最高在线", "互动（消息/提问/已答/赞/签到）", "现场人数"];
  const t = el("table", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)), atStation ? el("th", {}, "上报") : ""));
  for (const r of rows) {
    const tr = el("tr", {}, el("td", { class: "text" }, r.day), el("td", { class: "text" }, r.station), el("td", { class: "text" }, KIND[r.kind] || r.kind),
      el("td", { class: "text" }, r.title), el("td", { class: "text" }, r.speaker), el("td", { class: "text" }, r.film || ""),
      el("td", {}, r.minutes), el("td", {}, r.online_viewers), el("td", {}, r.peak_viewers),
      el("td", {}, `${r.messages}/${r.questions}/${r.questions_answered}/${r.likes}/${r.checkins}`));
    if (atStation) {
      // The station's report: in-person headcount, speaker and topic.
      const count = el("input", { type: "number", min: "0", value: r.in_person, class: "in-count" });
      const speaker = el("input", { value: r.speaker, placeholder: "主讲人", class: "in-speaker" });
      const topic = el("select", {}, el("option", { value: "0" }, "（主题）"), ...topics.map((x) => el("option", { value: x.id }, x.name)));
      const save = el("button", { onclick: async () => {
        try {
          await api(`/api/admin/sessions/${r.id}`, { method: "POST", headers: { "content-type": "application/json" },
            body: JSON.stringify({ in_person: Number(count.value), speaker: speaker.value, topic_id: Number(topic.value) }) });
          save.textContent = "已保存";
          showError("");
        } catch (e) { showError(e.message); }
      } }, "保存");
      tr.append(el("td", {}, count), el("td", {}, speaker, topic, save));
    } else {
      tr.append(el("td", {}, r.in_person));
    }
    t.append(tr);
  }
  $("sessions").textContent = "";
  $("sessions").append(rows.length ? t : "没有符合条件的场次。");
  csvLink($("sessionsCsv"), "sessions", { limit: 10000 }, "场次明细.csv");
}

// A station's planned lectures and film classes (the programme residents see on /s/{c}):
// plan a lecture, cancel one. Times are Beijing time (UTC+8).
const shanghai = (iso) => new Date(Date.parse(iso) + 8 * 3600e3).toISOString().slice(0, 16).replace("T", " ");
const STATUS = { scheduled: "待开始", live: "直播中", ended: "已结束", cancelled: "已取消", missed: "未开始" };
async function plan(station) {
  const card = $("planCard");
  if (!station) { card.classList.add("hidden"); return; }
  card.classList.remove("hidden");
  const today = new Date(Date.now() + 8 * 3600e3);
  const day = (d) => d.toISOString().slice(0, 10);
  const q = new URLSearchParams({ level: "station", id: station.id, from: day(today), to: day(new Date(today.getTime() + 59 * 86400e3)) });
  const [programme, topics] = await Promise.all([
    (await api("/api/programme?" + q)).json(), (await api("/api/admin/topics")).json()]);
  const t = el("table", {}, el("tr", {}, ...["开始", "类型", "标题", "主讲人", "状态", ""].map((h) => el("th", {}, h))));
  for (const it of programme.items) {
    const cancel = it.kind === "lecture" && it.status === "scheduled"
      ? el("button", { onclick: async () => {
          if (!confirm("取消「" + it.title + "」？居民将在节目单和日历中看到已取消。")) return;
          try { await api(`/api/items/${it.id}/cancel`, { method: "POST" }); await plan(station); } catch (e) { showError(e.message); }
        } }, "取消") : "";
    t.append(el("tr", {}, el("td", { class: "text" }, shanghai(it.starts_at)), el("td", { class: "text" }, KIND[it.kind] || it.kind),
      el("td", { class: "text" }, el("a", { href: it.url, target: "_blank" }, it.title)), el("td", { class: "text" }, it.speaker || ""),
      el("td", { class: "text" }, STATUS[it.status] || it.status), el("td", {}, cancel)));
  }
  $("plan").textContent = "";
  $("plan").append(programme.items.length ? t : "还没有安排节目。");
  const topic = $("planTopic");
  topic.textContent = "";
  topic.append(el("option", { value: "0" }, "（不选）"), ...topics.map((x) => el("option", { value: x.id }, x.name)));
  $("planForm").onsubmit = async (ev) => {
    ev.preventDefault();
    try {
      await api("/api/lectures", { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ channel: String(station.id), title: $("planTitle").value, speaker: $("planSpeaker").value,
          topic_id: Number(topic.value) || null, at: $("planAt").value + ":00+08:00" }) });
      $("planTitle").value = "";
      showError("");
      await plan(station);
    } catch (e) { showError(e.message); }
  };
}

const REQUEST_STATUS = { requested: "待安排", scheduled: "待接单", accepted: "已接单", declined: "已拒绝", done: "已完成", cancelled: "已撤回" };
// 居民点单: figures, the popular items, every request in scope; city and center admins
// schedule the ticked ones onto a station; the assigned station accepts or declines.
async function requests() {
  const [stats, listed] = await Promise.all([
    (await api("/api/stats/requests?" + params({ group: "station" }))).json(),
    (await api("/api/admin/requests")).json()]);
  const st = el("table", {}, el("tr", {}, ...["站点", "收到", "已完成", "已拒绝", "中位天数"].map((h) => el("th", {}, h))));
  for (const r of stats) {
    st.append(el("tr", {}, el("td", { class: "text" }, r.name), el("td", {}, r.received), el("td", {}, r.fulfilled),
      el("td", {}, r.declined), el("td", {}, r.median_days === null ? "—" : r.median_days)));
  }
  $("requestStats").textContent = "";
  $("requestStats").append(stats.length ? st : "所选时段没有点单。");
  csvLink($("requestStatsCsv"), "requests", { group: "station" }, "居民点单统计.csv");
  const ct = el("table", {}, el("tr", {}, ...["服务", "站点", "待安排", "合计"].map((h) => el("th", {}, h))));
  for (const c of listed.counts.slice(0, 20)) {
    ct.append(el("tr", {}, el("td", { class: "text" }, c.title), el("td", { class: "text" }, c.station), el("td", {}, c.waiting), el("td", {}, c.total)));
  }
  $("requestCounts").textContent = "";
  $("requestCounts").append(listed.counts.length ? ct : "还没有点单。");
  const lt = el("table", {}, el("tr", {}, ...["", "站点", "服务", "称呼", "期望", "电话", "状态", ""].map((h) => el("th", {}, h))));
  for (const r of listed.requests.slice(0, 200)) {
    const pick = r.status === "requested" ? el("input", { type: "checkbox", "data-request": r.id }) : "";
    const act = async (verb) => {
      const body = {};
      if (verb === "decline") {
        const reason = prompt("拒绝原因（居民会看到）：");
        if (!reason) return;
        body.reason = reason;
      }
      try {
        await api(`/api/admin/requests/${r.id}/${verb}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
        await requests();
      } catch (e) { showError(e.message); }
    };
    const actions = r.status === "scheduled"
      ? el("span", {}, el("button", { onclick: () => act("accept") }, "接单"), " ", el("button", { onclick: () => act("decline") }, "拒绝"))
      : (r.planned_item_id ? el("a", { href: "/e/" + r.planned_item_id, target: "_blank" }, "节目") : "");
    lt.append(el("tr", {}, el("td", {}, pick), el("td", { class: "text" }, r.station), el("td", { class: "text" }, r.item.title),
      el("td", { class: "text" }, r.nickname), el("td", { class: "text" }, r.period), el("td", { class: "text" }, r.phone || ""),
      el("td", { class: "text" }, (REQUEST_STATUS[r.status] || r.status) + (r.decline_reason ? "：" + r.decline_reason : "")), el("td", {}, actions)));
  }
  $("requestList").textContent = "";
  $("requestList").append(listed.requests.length ? lt : "还没有点单。");
  $("requestForm").onsubmit = async (ev) => {
    ev.preventDefault();
    const ids = Array.from(document.querySelectorAll("#requestList input[data-request]:checked")).map((x) => Number(x.getAttribute("data-request")));
    if (!ids.length) { showError("请先勾选要安排的点单（同一服务项目）。"); return; }
    try {
      await api("/api/admin/requests/schedule", { method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ request_ids: ids, station: $("requestStation").value.trim(), at: $("requestAt").value + ":00+08:00" }) });
      showError("");
      await requests();
    } catch (e) { showError(e.message); }
  };
}

async function refresh() {
  showError("");
  crumbs();
  const last = path[path.length - 1];
  const level = last ? last.level : "city";
  const child = LEVELS[LEVELS.indexOf(level) + 1];
  const period = $("period").value;
  try {
    const [total, series, films] = await Promise.all([
      table("table", {}), table("table", { period }), table("table", { group: "film" })]);
    figures(total[0]);
    terminals(total[0]);
    chart(series);
    $("seriesNote").textContent = "（按" + $("period").selectedOptions[0].text + "，日期按北京时间）";
    csvLink($("seriesCsv"), "table", { period }, "受众走势.csv");
    $("films").textContent = "";
    $("films").append(rankTable(films.filter((f) => f.group_id !== 0), null));
    if (child) {
      const names = { center: "中心", institute: "所", station: "站" };
      $("rankTitle").textContent = names[child] + "排行（点击名称下钻）";
      $("ranking").textContent = "";
      $("ranking").append(rankTable(await table("table", { group: child }), child));
      csvLink($("rankCsv"), "table", { group: child }, names[child] + "排行.csv");
      $("rankCard").classList.remove("hidden");
    } else {
      $("rankCard").classList.add("hidden");
    }
    await sessions(level === "station");
    await plan(level === "station" ? last : null);
    await requests();
  } catch (e) { showError(e.message); }
}

$("refresh").onclick = refresh;
if (token) start(); else $("login").classList.remove("hidden");
