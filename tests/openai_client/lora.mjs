// lora.mjs - the official `openai` npm package against `herd serve --lora NAME=PATH`
// (HERD_URL = base URL ending in /v1, HERD_MODEL = the model's id, HERD_ADAPTERS =
// the adapters' names, comma-separated; tests/cli_lora.sh sets them): adapters are
// models to the client. Exits non-zero on the first failed check.
import OpenAI from 'openai';
import assert from 'node:assert/strict';

const client = new OpenAI({ baseURL: process.env.HERD_URL, apiKey: 'none' });
const base = process.env.HERD_MODEL, adapters = process.env.HERD_ADAPTERS.split(',');

const ids = [];
for await (const m of client.models.list()) ids.push([m.id, m.parent ?? null]);
assert.deepEqual(ids, [[base, null], ...adapters.map((a) => [a, base])], 'models.list: the model, then its adapters');

const messages = [{ role: 'user', content: 'Tell me a story.' }];
const answers = {};
for (const model of [base, ...adapters]) {
  const chat = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0 });
  assert.equal(chat.model, model);
  answers[model] = chat.choices[0].message.content;
  let text = '';
  const stream = await client.chat.completions.create({ model, messages, max_tokens: 12, temperature: 0, stream: true });
  for await (const chunk of stream) {
    assert.equal(chunk.model, model);
    text += chunk.choices[0]?.delta?.content ?? '';
  }
  assert.equal(text, answers[model], `${model}: streamed == not streamed`);
  const done = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 4, temperature: 0 });
  assert.equal(done.model, model);
}
assert.notEqual(answers[adapters[0]], answers[base], 'an adapter answers differently from the model');

await assert.rejects(client.chat.completions.create({ model: 'no-such-adapter', messages, max_tokens: 2 }),
  (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
console.log('openai client with LoRA adapters: ok');
