// bench/long_prompt.mjs - a long prompt among decoders: 8 clients stream long generations
// (ignore_eos), and 1.5 s in a ninth sends a prompt of WORDS words (~1 token each; distinct per
// run, so nothing is cached) for 4 tokens. Prints the long prompt's time to first token and the
// decoders' gaps between tokens before it and while it is prefilled: what herd serve's
// --prefill-chunk trades (smaller chunks: shorter gaps, a later first token).
//
//   node bench/long_prompt.mjs PORT [WORDS]      (a server on 127.0.0.1:PORT; WORDS default 700)
import http from 'node:http';
const [port, longWords = '700'] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true });
const model = (await (await fetch(`http://127.0.0.1:${port}/v1/models`)).json()).data[0].id;
function stream(prompt, maxTokens, onChunk) {
  return new Promise((res, rej) => {
    const t0 = performance.now();
    const body = JSON.stringify({ model, prompt, max_tokens: maxTokens, temperature: 0, stream: true, ignore_eos: true });
    const req = http.request({ host: '127.0.0.1', port, path: '/v1/completions', method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, r => {
      let buf = '';
      r.setEncoding('utf8');
      r.on('data', d => { buf += d; let nl; while ((nl = buf.indexOf('\n\n')) >= 0) { const ev = buf.slice(0, nl); buf = buf.slice(nl + 2);
        if (ev.startsWith('data: {')) { const j = JSON.parse(ev.slice(6)); if (j.choices && j.choices.length && j.choices[0].text) onChunk(performance.now(), t0); } } });
      r.on('end', res); r.on('error', rej);
    });
    req.on('error', rej); req.end(body);
  });
}
const words = 'the of and to in is was for on with as by at from that this which river stone light'.split(' ');
let longText = 'Document ' + process.pid + ':'; for (let k = 0; k < +longWords; k++) longText += ' ' + words[(k * 7 + 3) % words.length];
const gaps = [];
let tLongStart = 0, tLongFirst = 0;
const decs = Array.from({ length: 8 }, (_, i) => { let last = 0; return stream(`Story ${i}: the river`, 220, t => { if (last) gaps.push([t, t - last]); last = t; }); });
await new Promise(r => setTimeout(r, 1500));
tLongStart = performance.now();
await stream(longText, 4, t => { if (!tLongFirst) tLongFirst = t; });
await Promise.all(decs);
const during = gaps.filter(([t]) => t > tLongStart && t <= tLongFirst + 1).map(g => g[1]).sort((a, b) => a - b);
const before = gaps.filter(([t]) => t < tLongStart).map(g => g[1]).sort((a, b) => a - b);
const q = (v, p) => v.length ? v[Math.min(v.length - 1, Math.floor(p * v.length))].toFixed(0) : '-';
console.log(`long prompt TTFT ${(tLongFirst - tLongStart).toFixed(0)} ms; decoders' gaps before: median ${q(before, .5)} max ${q(before, 1)}; during its prefill: median ${q(during, .5)} p90 ${q(during, .9)} max ${q(during, 1)} ms (${during.length} gaps)`);
