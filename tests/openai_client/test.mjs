// test.mjs - the official `openai` npm package against a running `herd serve`
// (HERD_URL = base URL ending in /v1, HERD_MODEL = model id; tests/cli_serve.sh
// sets both). Exits non-zero on the first failed check.
import OpenAI from 'openai';
import assert from 'node:assert/strict';

const client = new OpenAI({ baseURL: process.env.HERD_URL, apiKey: process.env.HERD_API_KEY || 'none' });
const model = process.env.HERD_MODEL;
const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Say hi.' }];

const models = await client.models.list();
assert.ok(models.data.some((m) => m.id === model), 'models.list has the model');

const chat = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
assert.equal(chat.object, 'chat.completion');
assert.equal(chat.choices[0].message.role, 'assistant');
assert.equal(typeof chat.choices[0].message.content, 'string');
assert.ok(['stop', 'length'].includes(chat.choices[0].finish_reason));
assert.equal(chat.usage.total_tokens, chat.usage.prompt_tokens + chat.usage.completion_tokens);
assert.ok(chat.usage.prompt_tokens_details.cached_tokens < chat.usage.prompt_tokens);

const stream = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let text = '', finish = null, usage = null, chunks = 0;
for await (const chunk of stream) {
  chunks++;
  assert.equal(chunk.object, 'chat.completion.chunk');
  if (chunk.usage) usage = chunk.usage;
  const c = chunk.choices[0];
  if (!c) continue;
  if (c.delta.content) text += c.delta.content;
  if (c.finish_reason) finish = c.finish_reason;
}
assert.ok(chunks >= 3, 'several chunks');
assert.equal(text, chat.choices[0].message.content, 'streamed text == non-streamed text at temperature 0');
assert.ok(['stop', 'length'].includes(finish));
assert.equal(usage.completion_tokens, chat.usage.completion_tokens);

// n choices, not streamed and streamed
const two = await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 1, seed: 7, n: 2 });
assert.deepEqual(two.choices.map((c) => c.index), [0, 1]);
assert.equal(two.usage.total_tokens, two.usage.prompt_tokens + two.usage.completion_tokens);
const twoStream = await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 1, seed: 7, n: 2, stream: true });
const texts = ['', ''];
for await (const chunk of twoStream) for (const c of chunk.choices) texts[c.index] += c.delta.content ?? '';
assert.deepEqual(texts, two.choices.map((c) => c.message.content), 'streamed choices == non-streamed choices');

const cmpl = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 8, temperature: 0 });
assert.equal(cmpl.object, 'text_completion');
assert.equal(typeof cmpl.choices[0].text, 'string');
const cstream = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 8, temperature: 0, stream: true });
let ctext = '';
for await (const chunk of cstream) ctext += chunk.choices[0]?.text ?? '';
assert.equal(ctext, cmpl.choices[0].text);

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather', description: 'Current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}];
const tchat = await client.chat.completions.create({
  model, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, max_tokens: 8, temperature: 0,
});
assert.ok(['stop', 'length', 'tool_calls'].includes(tchat.choices[0].finish_reason));
const tstream = await client.chat.completions.create({
  model, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, max_tokens: 8, temperature: 0, stream: true,
});
for await (const chunk of tstream) assert.equal(chunk.object, 'chat.completion.chunk');
// a tool result going back in (assistant tool_calls + tool message)
const back = await client.chat.completions.create({
  model, tools, max_tokens: 4, temperature: 0, messages: [
    { role: 'user', content: 'Weather in Paris?' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
    { role: 'tool', tool_call_id: 'call_1', content: '{"temperature": 21}' },
  ],
});
assert.equal(back.object, 'chat.completion');

// structured output as applications ask for it: the client's parse() helper fills message.parsed
const schema = {
  type: 'object', additionalProperties: false, required: ['city', 'sunny'],
  properties: { city: { type: 'string', maxLength: 10 }, sunny: { type: 'boolean' } },
};
for (const stream of [false, true]) {
  const body = { model, messages, max_tokens: 200, temperature: 0.8, seed: 1,
    response_format: { type: 'json_schema', json_schema: { name: 'weather', strict: true, schema } } };
  let p;
  if (!stream) {
    const parsed = await client.beta.chat.completions.parse(body);
    assert.equal(parsed.choices[0].finish_reason, 'stop');
    p = parsed.choices[0].message.parsed;
  } else {
    // the stream helper fills parsed only for zod formats: the content is the JSON
    const runner = client.beta.chat.completions.stream(body);
    p = JSON.parse((await runner.finalChatCompletion()).choices[0].message.content);
  }
  assert.deepEqual(Object.keys(p), ['city', 'sunny'], JSON.stringify(p));
  assert.ok(typeof p.city === 'string' && [...p.city].length <= 10 && typeof p.sunny === 'boolean', JSON.stringify(p));
}

// the Responses API: text (output_text), streamed events, structured output, a function call and its result
const resp = await client.responses.create({ model, instructions: 'Be brief.', input: 'Say hi.', max_output_tokens: 8, temperature: 0 });
assert.equal(resp.object, 'response');
assert.ok(['completed', 'incomplete'].includes(resp.status));
assert.equal(typeof resp.output_text, 'string');
assert.equal(resp.usage.total_tokens, resp.usage.input_tokens + resp.usage.output_tokens);
const rstream = await client.responses.create({ model, instructions: 'Be brief.', input: 'Say hi.', max_output_tokens: 8, temperature: 0, stream: true });
let rtext = '', rdone = null, seq = -1;
for await (const ev of rstream) {
  assert.equal(ev.sequence_number, seq + 1, 'events numbered in order');
  seq = ev.sequence_number;
  if (ev.type === 'response.output_text.delta') rtext += ev.delta;
  if (ev.type === 'response.completed' || ev.type === 'response.incomplete') rdone = ev.response;
}
assert.equal(rtext, resp.output_text, 'streamed deltas == the output_text');
assert.equal(rdone.output[0].content[0].text, resp.output_text);
const rjson = await client.responses.create({ model, input: 'Weather as JSON', max_output_tokens: 200, temperature: 0.8,
  text: { format: { type: 'json_schema', name: 'weather', strict: true, schema } } });
const rp = JSON.parse(rjson.output_text);
assert.ok(typeof rp.city === 'string' && typeof rp.sunny === 'boolean', rjson.output_text);
const rtools = [{ type: 'function', name: 'get_weather',
  parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 8 } }, required: ['city'] } }];
const rcall = await client.responses.create({ model, input: 'Weather in Paris?', tools: rtools, tool_choice: 'required',
  max_output_tokens: 200, temperature: 0.8 });
assert.equal(rcall.output[0].type, 'function_call');
assert.equal(rcall.output[0].name, 'get_weather');
assert.equal(typeof JSON.parse(rcall.output[0].arguments).city, 'string');
const rback = await client.responses.create({ model, tools: rtools, max_output_tokens: 4, temperature: 0, input: [
  { role: 'user', content: 'Weather in Paris?' }, rcall.output[0],
  { type: 'function_call_output', call_id: rcall.output[0].call_id, output: '{"temperature": 21}' }] });
assert.equal(rback.object, 'response');
await assert.rejects(client.responses.create({ model, input: 'x', previous_response_id: 'resp_1' }), (e) => e.status === 400);

// embeddings (the client asks for base64 and decodes it): unit vectors, by index
const emb = await client.embeddings.create({ model, input: ['hello world', 'another text'] });
assert.equal(emb.data.length, 2);
assert.deepEqual(emb.data.map((d) => d.index), [0, 1]);
for (const d of emb.data) assert.ok(Math.abs(d.embedding.reduce((a, x) => a + x * x, 0) - 1) < 1e-5);
const embf = await client.embeddings.create({ model, input: 'hello world', encoding_format: 'float' });
assert.ok(embf.data[0].embedding.every((x, i) => Math.abs(x - emb.data[0].embedding[i]) < 1e-6), 'base64 = float');

await assert.rejects(client.chat.completions.create({ model: 'no-such-model', messages }), (e) => e.status === 404);
await assert.rejects(client.chat.completions.create({ model, messages, temperature: 9 }), (e) => e.status === 400);
console.log('openai client: all checks passed');
