// chat_page.mjs - drives herd's chat page (GET /) in headless Chromium over the
// DevTools protocol: opens URL#q=MESSAGE (the page sends the message on load; with
// MODEL, URL#m=MODEL&q=MESSAGE picks that model or adapter in the page's menu first),
// waits until the streamed assistant answer is complete, and prints one JSON line
// {"user": ..., "assistant": ..., "error": bool, "model": the menu's choice, "models":
// its entries}. Exits 1 on a timeout.
//   node --experimental-websocket tests/web/chat_page.mjs DEBUG_PORT URL MESSAGE [MODEL]
const [port, url, msg, model] = process.argv.slice(2);
const sleep = ms => new Promise(r => setTimeout(r, ms));
async function targets() {
    for (let i = 0; i < 100; i++) {
        try { return await (await fetch(`http://127.0.0.1:${port}/json/list`)).json(); }
        catch { await sleep(100); }
    }
    throw new Error('no DevTools endpoint');
}
const page = (await targets()).find(t => t.type === 'page');
const ws = new WebSocket(page.webSocketDebuggerUrl);
await new Promise((res, rej) => { ws.onopen = res; ws.onerror = rej; });
let id = 0; const waiting = new Map();
ws.onmessage = e => { const m = JSON.parse(e.data); if (m.id && waiting.has(m.id)) { waiting.get(m.id)(m); waiting.delete(m.id); } };
const call = (method, params = {}) => new Promise(res => { const i = ++id; waiting.set(i, res); ws.send(JSON.stringify({ id: i, method, params })); });
const evaluate = async expr => (await call('Runtime.evaluate', { expression: expr, returnByValue: true })).result?.result?.value;
await call('Page.navigate', { url: `${url}#${model ? `m=${encodeURIComponent(model)}&` : ''}q=${encodeURIComponent(msg)}` });
const probe = `(() => { const a = document.querySelector('.msg.assistant, .msg.error');
  const u = document.querySelector('.msg.user');
  if (!a || !(a.dataset.done || a.classList.contains('error'))) return null;
  const m = document.getElementById('model');
  return { user: u ? u.textContent : null, assistant: a.textContent, error: a.classList.contains('error'),
           model: m.value, models: [...m.options].map(o => o.textContent) }; })()`;
for (let i = 0; i < 600; i++) {
    const v = await evaluate(probe);
    if (v) { console.log(JSON.stringify(v)); ws.close(); process.exit(0); }
    await sleep(100);
}
console.error('chat_page: no complete answer within 60 s');
process.exit(1);
