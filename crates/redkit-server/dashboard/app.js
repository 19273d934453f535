const keyInput = document.getElementById("key");
keyInput.value = localStorage.getItem("redkit-key") || "";
keyInput.onchange = () => localStorage.setItem("redkit-key", keyInput.value);
const get = (path) => fetch(path, { headers: keyInput.value ? { Authorization: "Bearer " + keyInput.value } : {} });
function row(cells, tag = "td") { const tr = document.createElement("tr"); for (const c of cells) { const td = document.createElement(tag); td.textContent = c; tr.appendChild(td); } return tr; }
async function refresh() {
  try {
    const h = await (await get("/health")).json();
    const mode = document.getElementById("mode");
    mode.textContent = h.mode; mode.className = "mode " + h.mode;
    document.getElementById("status").textContent = h.status;
    const caps = document.getElementById("caps"); caps.replaceChildren(row(["capability", "in fallback", "available"], "th"));
    for (const c of h.capabilities || []) caps.appendChild(row([c.name, c.fallback, c.available]));
    document.getElementById("health").textContent = JSON.stringify(h, null, 2);
    const qs = document.getElementById("queues");
    const r = await get("/v1/queues");
    qs.replaceChildren(row(["queue", "waiting", "active", "delayed", "completed", "dead", "paused"], "th"));
    if (r.ok) for (const q of await r.json()) qs.appendChild(row([q.name, q.waiting, q.active, q.delayed, q.completed, q.dead, q.paused]));
    else qs.appendChild(row(["(" + r.status + ": enter an API key with queues read scope)"]));
  } catch (e) { document.getElementById("status").textContent = "unreachable: " + e; }
}
refresh(); setInterval(refresh, 2000);
