"""The reader and admin pages: plain HTML, CSS and a little JavaScript (no build step, no CDN —
a study must run on a hospital network without internet). Works with keyboard and on a phone."""

READER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Real or synthetic?</title>
<style>
 [hidden] { display: none !important; }
 body { font-family: system-ui, sans-serif; margin: 0; padding: 12px; background: #f6f6f4; color: #222; }
 main { max-width: 760px; margin: auto; }
 .images { display: flex; gap: 10px; justify-content: center; flex-wrap: wrap; }
 .images figure { margin: 0; flex: 1 1 300px; max-width: 360px; text-align: center; }
 .images img { width: 100%; height: auto; border-radius: 6px; background: #ddd; }
 .row { display: flex; gap: 8px; justify-content: center; margin: 12px 0; flex-wrap: wrap; }
 button { font-size: 1.05rem; padding: 12px 16px; border-radius: 8px; border: 1px solid #888; background: #fff;
          min-width: 64px; cursor: pointer; }
 button.chosen { background: #0072B2; color: #fff; border-color: #0072B2; }
 button:disabled { opacity: .5; }
 #progress { text-align: center; color: #555; }
 .hint { font-size: .85rem; color: #666; text-align: center; }
 select { font-size: 1rem; padding: 8px; }
</style></head>
<body><main>
<h1 id="question" style="font-size:1.3rem;text-align:center">Is this image real or synthetic?</h1>
<p id="progress">loading…</p>
<div class="images" id="images"></div>
<div class="row" id="answers"></div>
<div class="row" id="diagnosis-row" hidden><label>Diagnosis (optional):
 <select id="diagnosis"><option value="">—</option></select></label></div>
<p class="hint" id="confidence-label">Then your confidence (1 = guessing, 5 = certain):</p>
<div class="row" id="confidence"></div>
<p class="hint" id="keys"></p>
<p id="status" class="hint" role="status"></p>
</main>
<script>
const token = location.pathname.split("/").filter(Boolean).pop();
const classes = __CLASSES__;
let item = null, answer = null, busy = false, notice = "";
const $ = (id) => document.getElementById(id);
if (classes.length) {
  $("diagnosis-row").hidden = false;
  for (const c of classes) { const o = document.createElement("option"); o.value = c; o.textContent = c;
    $("diagnosis").appendChild(o); }
}
function button(label, key, onclick, id) {
  const b = document.createElement("button"); b.textContent = label; b.dataset.key = key; b.onclick = onclick;
  if (id) b.id = id; return b;
}
function choose(a) {
  answer = a;
  for (const b of $("answers").children) b.classList.toggle("chosen", b.dataset.answer === a);
  for (const b of $("confidence").children) b.disabled = false;
}
async function submit(conf) {
  if (!item || !answer || busy) return;
  busy = true;
  for (const b of document.querySelectorAll("button")) b.disabled = true;
  const body = {item_id: item.item_id, answer: answer, confidence: conf, diagnosis: $("diagnosis").value || null};
  let r = null, j = {};
  try {
    r = await fetch(`/api/r/${token}/answer`, {method: "POST", headers: {"Content-Type": "application/json"},
                                               body: JSON.stringify(body)});
    j = await r.json().catch(() => ({}));
  } catch (e) { r = null; }
  busy = false;
  if (r && r.status === 409) {  // answered already (another tab): say so, then go on
    notice = j.error || "Not recorded: this image had been answered already; the first answer stands.";
    $("diagnosis").value = "";
    await load();
    return;
  }
  if (!r || !r.ok) {  // not saved: everything usable again, and the reader is told to retry
    for (const b of $("answers").children) b.disabled = false;
    for (const b of $("confidence").children) b.disabled = !answer;
    $("status").textContent = "Could not save your answer (" + ((r && (j.error || r.status)) || "no connection") +
                              "); it was not recorded. Press the confidence again to retry.";
    document.body.dataset.saveFailed = "1";
    return;
  }
  delete document.body.dataset.saveFailed;
  $("diagnosis").value = "";
  await load();
}
function render() {
  const single = item.task === "single";
  $("question").textContent = single ? "Is this image real or synthetic?" : "Which image is synthetic?";
  $("images").innerHTML = "";
  item.images.forEach((src, i) => {
    const f = document.createElement("figure"); const im = document.createElement("img");
    im.src = src; im.alt = single ? "image" : (i === 0 ? "left image" : "right image"); f.appendChild(im);
    if (!single) { const c = document.createElement("figcaption"); c.textContent = i === 0 ? "left" : "right";
      f.appendChild(c); }
    $("images").appendChild(f);
  });
  $("answers").innerHTML = "";
  const opts = single ? [["Real (R)", "r", "real"], ["Synthetic (S)", "s", "synthetic"]]
                      : [["← Left is synthetic", "ArrowLeft", "left"], ["Right is synthetic →", "ArrowRight", "right"]];
  for (const [label, key, a] of opts) {
    const b = button(label, key, () => choose(a), "answer-" + a); b.dataset.answer = a; $("answers").appendChild(b);
  }
  $("confidence").innerHTML = "";
  for (let c = 1; c <= 5; c++) {
    const b = button(String(c), String(c), () => submit(c), "confidence-" + c); b.disabled = true;
    $("confidence").appendChild(b);
  }
  $("keys").textContent = single ? "Keys: R = real, S = synthetic, then 1–5" : "Keys: ← / →, then 1–5";
  $("progress").textContent = `${item.answered + 1} of ${item.total}`;
  $("status").textContent = notice;
  notice = "";
  answer = null;
}
async function load() {
  let r, j;
  try { r = await fetch(`/api/r/${token}/next`); j = await r.json(); }
  catch (e) { $("status").textContent = "No connection to the study server; reload the page to retry."; return; }
  if (!r.ok) { $("progress").textContent = j.error || "error"; return; }
  if (j.done) {
    item = null;
    $("question").textContent = "Thank you — you have answered every image.";
    for (const id of ["images", "answers", "confidence"]) $(id).innerHTML = "";
    $("confidence-label").hidden = true; $("keys").textContent = "";
    $("progress").textContent = `${j.answered} of ${j.total} answered`;
    document.body.dataset.finished = "1";
    return;
  }
  item = j; render();
}
document.addEventListener("keydown", (e) => {
  if (!item || e.target.tagName === "SELECT") return;
  const k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  const single = item.task === "single";
  if (single && k === "r") choose("real");
  else if (single && k === "s") choose("synthetic");
  else if (!single && k === "ArrowLeft") choose("left");
  else if (!single && k === "ArrowRight") choose("right");
  else if (/^[1-5]$/.test(k)) submit(Number(k));
});
load();
</script></body></html>
"""

ADMIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Reader study — admin</title>
<style>body{font-family:system-ui,sans-serif;margin:16px} td,th{padding:4px 10px;border-bottom:1px solid #ddd}</style>
</head><body><h1>Reader study — progress</h1>
<table><tr><th>reader</th><th>answered</th><th>last answer</th><th>invitation</th></tr>__ROWS__</table>
<p><a id="export" href="/admin/export.csv">Export all answers (CSV, with the key)</a></p>
<form method="post" action="/admin/logout"><button id="logout" type="submit">Log out</button></form>
</body></html>
"""

ADMIN_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Reader study — admin</title><style>body{font-family:system-ui,sans-serif;margin:16px}</style></head>
<body><h1>Reader study — admin</h1>
<form method="post" action="/admin/login"><label>Admin token <input id="token" name="token" type="password"
 autocomplete="off" required></label> <button id="login" type="submit">Open</button></form>
<p>The token is sent in the request body and exchanged for a session that ends when you log out or after a
few hours; it never appears in a URL (or a proxy's log) and is not stored in your browser.</p>
</body></html>
"""
