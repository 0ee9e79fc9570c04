// bench/serve_load.mjs - a load client for `herd serve`: N concurrent clients,
// each sending streaming /v1/completions requests back to back, measuring time to
// first token (first content chunk) per request and generated tokens (usage).
// Request i asks for tokensOf(i) tokens (MAX_TOKENS on average, spread so clients
// drift apart). Prompts share a common prefix of PROMPT_WORDS words (a system prompt) and end
// with the request's number. Prints one JSON line: {conc, requests, tokens, wall_s,
// tok_s, all_active_s and all_active_tok_s (the window in which every client is
// active: clients start together but end apart, and while the last ones drain fewer
// than CONC streams run), ttft_median_ms, ttft_p99_ms (every request), ttft_steady_median_ms,
// ttft_steady_p99_ms (each client's later requests: they arrive while the other
// clients decode), errors}. Node 18+; no dependencies.
//
//   node bench/serve_load.mjs URL CONC REQUESTS MAX_TOKENS [PROMPT_WORDS] [THINK_MS]
// REQUESTS is the total over all clients. THINK_MS (default 0): a client waits a
// pseudo-random 0 .. 2 * THINK_MS ms (the same sequence every run) after each
// response before its next request, as a user reads or an application works; with
// 0 a request follows the previous one's last byte at once (the server's --linger
// lets it join the next step).
// SERVE_LOAD_BAN_PARTIAL=MODEL.gguf: each request bans (logit_bias, llama.cpp's [id, false]
// form) the vocabulary's tokens that are not whole UTF-8 characters: llama-server ends a
// stream with an error when a random-weight model's output is not valid UTF-8 (herd holds
// such bytes back), so for llama-server the outputs are kept valid. A token's cost does not
// depend on which it is; only where an end of text comes can differ.
import fs from 'node:fs';
import http from 'node:http';

const [url, conc = '1', total = '4', maxTokens = '32', promptWords = '40', think = '0'] = process.argv.slice(2);
if (!url) {
    console.error('usage: node bench/serve_load.mjs URL CONC REQUESTS MAX_TOKENS [PROMPT_WORDS]');
    process.exit(2);
}
// The ids of a GGUF's vocabulary whose bytes are not valid UTF-8 on their own
// (byte-level BPE: each byte spelled as one printable character)
function partialUtf8Tokens(path) {
    const fd = fs.openSync(path, 'r');
    const buf = Buffer.alloc(16 << 20);
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    fs.closeSync(fd);
    let o = 0;
    const u32 = () => { const v = buf.readUInt32LE(o); o += 4; return v; };
    const u64 = () => { const v = Number(buf.readBigUInt64LE(o)); o += 8; return v; };
    const str = () => { const l = u64(); const s = buf.subarray(o, o + l); o += l; return s; };
    if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${path}: not a GGUF file`);
    o = 4; u32(); u64(); const nkv = u64();
    const size = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];
    let tokens = null, types = null;
    const value = (t, keep) => {
        if (t === 8) return str();
        if (t === 9) {
            const et = u32(), len = u64(), out = keep ? [] : null;
            for (let i = 0; i < len; i++) {
                if (et === 8 || et === 9) { const v = value(et, keep); if (keep) out.push(v); }
                else { if (keep) out.push(buf.readInt32LE(o)); o += size[et]; }
            }
            return out;
        }
        o += size[t];
        return null;
    };
    for (let k = 0; k < nkv && o < n; k++) {
        const key = str().toString('utf8'), t = u32();
        const keep = key === 'tokenizer.ggml.tokens' || key === 'tokenizer.ggml.token_type';
        const v = value(t, keep);
        if (key === 'tokenizer.ggml.tokens') tokens = v;
        if (key === 'tokenizer.ggml.token_type') types = v;
        if (tokens && types) break;
    }
    if (!tokens) throw new Error(`${path}: no tokenizer.ggml.tokens in the first 16 MiB`);
    // byte-level BPE: each byte is one printable character
    const printable = b => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const back = new Map();
    for (let b = 0, extra = 0; b < 256; b++) back.set(printable(b) ? b : 256 + extra++, b);
    const dec = new TextDecoder('utf-8', { fatal: true });
    const bad = [];
    tokens.forEach((t, id) => {
        if (types && types[id] !== 1) return; /* control / user-defined tokens are not text */
        const cps = [...t.toString('utf8')].map(c => c.codePointAt(0));
        if (cps.some(c => !back.has(c))) return;
        try { dec.decode(Uint8Array.from(cps.map(c => back.get(c)))); } catch { bad.push(id); }
    });
    return bad;
}
const banned = process.env.SERVE_LOAD_BAN_PARTIAL ? partialUtf8Tokens(process.env.SERVE_LOAD_BAN_PARTIAL) : [];
const bias = banned.length ? { logit_bias: banned.map(id => [id, false]) } : {};

const words = 'the of and to in is was for on with as by at from that this which river stone light'.split(' ');

function prompt(i) { // a common prefix of PROMPT_WORDS words, then the request's own tail
    let s = 'Context:';
    for (let k = 0; k < +promptWords; k++) s += ' ' + words[(k * 13) % words.length];
    return s + `. Request ${i}, part ${i * 7 % 11}:`;
}

// the model and any LoRA adapters the server lists: request i names models[i % n]
// (with adapters: the base and each adapter in turn)
const models = (await (await fetch(url + '/v1/models')).json()).data.map(d => d.id);

// MAX_TOKENS on average, spread over [MAX_TOKENS/2, 3*MAX_TOKENS/2] so the clients
// drift apart and later requests arrive while the others are decoding; a fixed
// pseudo-random spread (a hash of i: runs are comparable), not a progression: with
// i * 7919 (= -i mod 33 at 32 tokens) request i + 1 asked one token less than
// request i, so clients that sent them a step apart finished in the same step, and
// their next requests arrived together, again and again
const mix = i => {
    let h = Math.imul(i ^ (i >>> 16), 0x45d9f3b);
    h = Math.imul(h ^ (h >>> 16), 0x45d9f3b);
    return (h ^ (h >>> 16)) >>> 0;
};
const tokensOf = i => Math.max(1, Math.floor(+maxTokens / 2) + mix(i) % (+maxTokens + 1));

// node:http with a kept-alive connection per client, not fetch: this client shares
// the server's CPUs, and fetch's web streams cost ~0.5 ms of CPU a token (8 streams
// at ~230 tok/s: a tenth of a core taken from the server's threads)
const target = new URL(url);
// (SERVE_LOAD_CLOSE=1: a connection per request; llama-server closes its connection after a
// streamed response without saying so, and a kept-alive socket then fails the next request)
const agent = new http.Agent({ keepAlive: !process.env.SERVE_LOAD_CLOSE, maxSockets: 1024 });
function one(i) {
    const t0 = performance.now();
    const body = JSON.stringify({ model: models[i % models.length], prompt: prompt(i), max_tokens: tokensOf(i), temperature: 0,
                                  stream: true, stream_options: { include_usage: true }, ...bias });
    return new Promise((resolve, reject) => {
        const req = http.request({ host: target.hostname, port: target.port, path: '/v1/completions', method: 'POST', agent,
                                   headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
                                   timeout: 600000 }, res => {
            let ttft = -1, tokens = -1, chunks = 0, buf = '';
            res.setEncoding('utf8');
            if (res.statusCode !== 200) {
                res.on('data', d => { buf += d; });
                res.on('end', () => reject(new Error(`HTTP ${res.statusCode}: ${buf}`)));
                return;
            }
            res.on('data', d => {
                buf += d;
                let nl;
                while ((nl = buf.indexOf('\n\n')) >= 0) {
                    const ev = buf.slice(0, nl);
                    buf = buf.slice(nl + 2);
                    if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
                    const j = JSON.parse(ev.slice(6));
                    if (ttft < 0 && j.choices && j.choices.length) ttft = performance.now() - t0;
                    if (j.choices && j.choices.length && j.choices[0].text) chunkTimes.push(performance.now()), chunks++;
                    if (j.usage) tokens = j.usage.completion_tokens;
                }
            });
            // a server that sends no usage: one token a chunk
            res.on('end', () => resolve({ ttft, tokens: tokens >= 0 ? tokens : chunks, tFirst: t0 + ttft }));
            res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
        req.end(body);
    });
}

// the window in which every client is active: from the last client's first token
// to the first client's end (before it the clients ramp up, after it they drain)
const chunkTimes = [], clientStart = [], clientEnd = [];
const ttfts = [], steady = [];
let tokens = 0, errors = 0, next = 0;
const t0 = performance.now();
async function client() {
    let firstToken = -1;
    for (let first = true; next < +total; first = false) {
        const i = next++;
        if (!first && +think > 0) /* a fixed pseudo-random spread: runs are comparable */
            await new Promise(res => setTimeout(res, 2 * +think * (((i * 2654435761) >>> 0) % 1000) / 1000));
        try {
            const r = await one(i);
            if (r.ttft >= 0) ttfts.push(r.ttft);
            if (r.ttft >= 0 && !first) steady.push(r.ttft);
            if (r.ttft >= 0 && firstToken < 0) firstToken = r.tFirst;
            tokens += r.tokens;
        } catch (e) {
            errors++;
            if (errors <= 3) console.error('serve_load:', e.message);
        }
    }
    clientStart.push(firstToken);
    clientEnd.push(performance.now());
}
await Promise.all(Array.from({ length: +conc }, client));
const wall = (performance.now() - t0) / 1000;
ttfts.sort((a, b) => a - b);
steady.sort((a, b) => a - b);
const qq = (v, p) => v.length ? v[Math.min(v.length - 1, Math.floor(p * v.length))] : -1;
const q = p => qq(ttfts, p);
// tokens in the window: content chunks in it, times tokens per chunk over the run
// (a chunk is one token, or several when a token ends inside a UTF-8 character)
const w0 = Math.max(...clientStart), w1 = Math.min(...clientEnd);
const inWin = chunkTimes.filter(t => t >= w0 && t < w1).length;
const fullTps = w1 > w0 && chunkTimes.length ? inWin * (tokens / chunkTimes.length) / ((w1 - w0) / 1000) : -1;
console.log(JSON.stringify({ conc: +conc, requests: +total, tokens, wall_s: +wall.toFixed(2),
                             tok_s: +(tokens / wall).toFixed(2), all_active_s: +(Math.max(0, w1 - w0) / 1000).toFixed(2),
                             all_active_tok_s: +fullTps.toFixed(2), ttft_median_ms: +q(0.5).toFixed(1),
                             ttft_p99_ms: +q(0.99).toFixed(1), ttft_steady_median_ms: +qq(steady, 0.5).toFixed(1),
                             ttft_steady_p99_ms: +qq(steady, 0.99).toFixed(1), errors }));
