// lora_llamacpp.mjs - dev-time helper for tools/record_lora_fixture.sh (never run by
// the tests): llama.cpp's greedy continuation of a GGUF model with a GGUF LoRA adapter
// applied (node-llama-cpp's context `lora` option), F32 KV cache, one sequence.
//   node tools/lora_llamacpp.mjs MODEL.gguf ADAPTER.gguf IDS N
// prints one JSON line: {"generated": [...], "margins": [...], "logprobs": [...]}
// (log-probs from the softmax node-llama-cpp returns at temperature 0).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {pathToFileURL} from "node:url";

const [gguf, adapter, idsArg, nArg] = process.argv.slice(2);
if (!gguf || !adapter || !idsArg) {
    console.error("usage: node tools/lora_llamacpp.mjs MODEL.gguf ADAPTER.gguf IDS N");
    process.exit(2);
}
process.env.UV_THREADPOOL_SIZE ??= "1";
const cache = process.env.ORACLE_CACHE || path.join(os.homedir(), ".cache", "herd-oracle");
const entry = path.join(cache, "node", "node_modules", "node-llama-cpp", "dist", "index.js");
if (!fs.existsSync(entry)) { console.error(`node-llama-cpp not found at ${entry}`); process.exit(2); }
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(entry).href);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: gguf, gpuLayers: 0});
const ctx = await model.createContext({
    contextSize: 512, sequences: 1, flashAttention: false,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    lora: {adapters: [{filePath: adapter, scale: 1}]},
});
const ids = idsArg.split(/[\s,]+/).filter(Boolean).map(Number);
const n = +(nArg ?? 16);
const generated = [], margins = [], logprobs = [];
for await (const r of ctx.getSequence().evaluateWithMetadata(ids, {probabilities: true}, {temperature: 0, yieldEogToken: true})) {
    const top = [];
    for (const [tok, p] of r.probabilities) { top.push([tok, Math.log(p)]); if (top.length === 2) break; }
    generated.push(r.token);
    logprobs.push(top[0][1]);
    margins.push(top.length > 1 ? top[0][1] - top[1][1] : Infinity);
    if (generated.length >= n) break;
}
console.log(JSON.stringify({generated, margins, logprobs}));
await ctx.dispose();
