//! The dashboard's stylesheet and script, served by fanfare itself (no build step, no
//! external asset: it works offline, and the CSP allows scripts from `'self'` only).

/// `GET /assets/dashboard.css`.
pub(crate) const CSS: &str = r#"
:root { --fg: #1d2433; --muted: #667085; --line: #e4e7ec; --bg: #f8f9fb; --accent: #5b4bdb; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 24px; padding: 10px 24px; background: #fff; border-bottom: 1px solid var(--line); }
header .brand { font-weight: 700; font-size: 17px; color: var(--accent); text-decoration: none; }
nav { display: flex; gap: 16px; flex: 1; }
nav a { color: var(--fg); text-decoration: none; }
nav a:hover, a:hover { text-decoration: underline; }
main { padding: 20px 24px; max-width: 1200px; }
h1 { font-size: 20px; margin: 0 0 14px; }
h2 { font-size: 16px; margin: 22px 0 8px; }
a { color: var(--accent); }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td.mono, td a.mono { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.zero, td.zero a { color: #c0c4cc; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12.5px; }
pre { white-space: pre-wrap; word-break: break-word; background: #fff; border: 1px solid var(--line); padding: 10px; margin: 0; }
pre.error { border-color: #f4b4b4; background: #fff6f6; color: #8a1c1c; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; background: #eef0f3; color: #475467; }
.badge.completed { background: #e3f6ea; color: #146c36; }
.badge.failed { background: #fde5e5; color: #a11b1b; }
.badge.running { background: #e5eefe; color: #1f4fb4; }
.badge.sleeping, .badge.waiting { background: #f3ecfe; color: #6430b8; }
.badge.queued { background: #fff4dc; color: #8a5a00; }
.badge.cancelled, .badge.skipped { background: #eef0f3; color: #475467; }
.filters { display: flex; gap: 8px; align-items: center; margin-bottom: 12px; flex-wrap: wrap; }
.filters a { padding: 3px 10px; border: 1px solid var(--line); border-radius: 14px; background: #fff; text-decoration: none; color: var(--fg); }
.filters a.on { border-color: var(--accent); color: var(--accent); font-weight: 600; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; background: #fff; border: 1px solid var(--line); padding: 12px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; }
form.inline { display: inline; }
button { font: inherit; padding: 4px 12px; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: var(--accent); }
.logout button { background: #fff; color: var(--muted); border-color: var(--line); }
.actions { display: flex; gap: 8px; margin: 12px 0; }
.muted { color: var(--muted); }
.more { margin-top: 10px; }
.login { max-width: 360px; margin: 60px auto; background: #fff; border: 1px solid var(--line); padding: 24px; }
.login input { width: 100%; padding: 6px 8px; margin: 8px 0 12px; font: inherit; }
.notice { padding: 8px 12px; background: #fff4dc; border: 1px solid #f5d48b; margin-bottom: 12px; }
.live { font-size: 12px; color: var(--muted); }
"#;

/// `GET /assets/dashboard.js`: every element with `data-live="url"` is replaced by what
/// `url` answers, every 1.5 s while the tab is visible (the server renders the
/// fragment, escaped as the page is). A `401`/redirect to the login page reloads.
pub(crate) const JS: &str = r#"
(function () {
  "use strict";
  function refresh(el) {
    if (document.hidden) return;
    fetch(el.getAttribute("data-live"), { credentials: "same-origin", redirect: "manual" })
      .then(function (r) {
        if (r.type === "opaqueredirect" || r.status === 401) { location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== el.getAttribute("data-html")) {
          el.innerHTML = html;
          el.setAttribute("data-html", html);
        }
      })
      .catch(function () {});
  }
  function start() {
    var live = document.querySelectorAll("[data-live]");
    for (var i = 0; i < live.length; i++) {
      (function (el) { setInterval(function () { refresh(el); }, 1500); })(live[i]);
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
"#;
