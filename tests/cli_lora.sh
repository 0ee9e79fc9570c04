#!/bin/bash
# End-to-end tests of LoRA adapters in the CLI and in `herd serve` (--lora NAME=PATH),
# on a model and adapters written here (herd init, build/tests/mk_lora): generate /
# chat / perplexity --lora; the server's adapters as models (/v1/models, 404s),
# their answers = `herd generate --lora`'s at temperature 0, alone and among
# concurrent requests of the other adapter and of the plain model; the KV cache
# shared only between requests of the same adapter (cached_tokens); startup and
# flag errors. The arithmetic itself is checked against references in test_lora.
HERD=${HERD:-build/herd}
MK=${MK_LORA:-$(dirname "$HERD")/tests/mk_lora}
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
. "$(dirname "$0")/lib.sh"
C()   { curl -s --max-time 30 "$@"; }
jqe() { jq -e "$@" >/dev/null; }

$HERD init -o "$T/m" --gguf "$T/m.gguf" --type Q8_0 --seed 3 --dim 128 --layers 2 --heads 4 --kv-heads 2 --ffn 320 >/dev/null 2>&1
check "init" test -f "$T/m.gguf"
$MK "$T/m" "$T/ad1" --seed 1 --rank 8 --alpha 16 --b-range 0.06 && $MK "$T/m" "$T/ad2" --gguf "$T/ad2.gguf" --seed 2 --rank 4 --alpha 8 --targets qvgd --b-range 0.08
check "mk_lora" test -f "$T/ad2.gguf"
M="$T/m.gguf"
P="Once upon a time, in a land far away, there lived"

# ---- CLI
$HERD generate -m $M -p "$P" -n 16 --temp 0 > "$T/g0"
$HERD generate -m $M -p "$P" -n 16 --temp 0 --lora "$T/ad1" > "$T/g1"
$HERD generate -m $M -p "$P" -n 16 --temp 0 --lora "$T/ad2.gguf" > "$T/g2"
$HERD generate -m $M -p "$P" -n 16 --temp 0 --lora "$T/ad2" > "$T/g2p"
check "generate --lora changes the answer" bash -c "! cmp -s $T/g0 $T/g1 && ! cmp -s $T/g0 $T/g2 && ! cmp -s $T/g1 $T/g2"
check "a GGUF adapter = its PEFT form" cmp -s "$T/g2" "$T/g2p"
$HERD generate -m $M -p "$P" -n 16 --temp 0 --lora "$T/ad1" --lora-scale 0 > "$T/g1x0"
check "--lora-scale 0 = no adapter" cmp -s "$T/g0" "$T/g1x0"
$HERD chat -m $M -p "hello" -n 8 --temp 0 --lora "$T/ad1" > "$T/c1" 2>/dev/null
$HERD chat -m $M -p "hello" -n 8 --temp 0 > "$T/c0" 2>/dev/null
check "chat --lora answers, differently: $(head -c 100 "$T/c1")" bash -c "[ -s $T/c1 ] && ! cmp -s $T/c0 $T/c1"
$HERD perplexity -m $M --prompt-ids "256 79 110 99 101 32 117 112 111 110" > "$T/p0"
$HERD perplexity -m $M --prompt-ids "256 79 110 99 101 32 117 112 111 110" --lora "$T/ad1" > "$T/p1"
check "perplexity --lora scores with the adapter" bash -c "grep -q '^nll: ' $T/p1 && [ \"\$(grep '^nll' $T/p0)\" != \"\$(grep '^nll' $T/p1)\" ]"
expect_err "missing adapter" "no such file or directory" $HERD generate -m $M -p hi -n 2 --lora "$T/nope"
expect_err "a model as adapter" "is a model, not a LoRA adapter" $HERD generate -m $M -p hi -n 2 --lora "$M"
$HERD init -o "$T/w" --seed 3 --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 160 >/dev/null 2>&1
expect_err "an adapter for another model" "takes 64 inputs" $HERD generate -m "$T/w" -p hi -n 2 --lora "$T/ad1"

# herd quantize --lora: the adapter merged into a model of its own
$HERD quantize -q "$T/m.gguf" "$T/merged.gguf" Q8_0 --lora "$T/ad1" 2>"$T/q.err"
check "quantize --lora writes a merged model: $(cat "$T/q.err")" grep -q "LoRA merged" "$T/q.err"
$HERD generate -m "$T/merged.gguf" -p "$P" -n 16 --temp 0 > "$T/gm"
check "the merged model answers, not as the base: $(head -c 60 "$T/gm")" bash -c "[ -s $T/gm ] && ! cmp -s $T/g0 $T/gm"
expect_err "quantize --lora of another model's adapter" "takes 64 inputs" $HERD quantize -q "$T/w" "$T/x.gguf" Q8_0 --lora "$T/ad1"

# herd lora convert: the adapter as llama.cpp's GGUF adapter, which answers the same
$HERD lora convert -m "$M" "$T/ad1" "$T/ad1.gguf" 2>"$T/cv.err"
check "lora convert: $(cat "$T/cv.err")" grep -q "wrote .*ad1.gguf (LoRA adapter, rank 8, 14 projections)" "$T/cv.err"
$HERD generate -m $M -p "$P" -n 16 --temp 0 --lora "$T/ad1.gguf" > "$T/gcv"
check "the converted adapter answers as the PEFT one" cmp -s "$T/g1" "$T/gcv"
$HERD lora info -m $M "$T/ad2.gguf" > "$T/info"
check "lora info: the projections, shapes, ranks and size: $(tr '\n' '|' < "$T/info")" bash -c "
    grep -q '^LoRA adapter: 8 projections of 2 layers, rank up to 4' $T/info && grep -Eq '^  q_proj +2 layers +128 -> 128 +rank 4$' $T/info &&
    grep -Eq '^  down_proj +2 layers +320 -> 128 +rank 4$' $T/info && ! grep -q k_proj $T/info && grep -q '^parameters: 10752 ' $T/info"
expect_err "lora convert without -m" "\-m MODEL is required" $HERD lora convert "$T/ad1" "$T/x.gguf"
expect_err "lora convert for another model" "takes 64 inputs" $HERD lora convert -m "$T/w" "$T/ad1" "$T/x.gguf"
expect_err "lora: unknown subcommand" "expected: herd lora convert" $HERD lora merge -m $M "$T/ad1" "$T/x.gguf"

# ---- server
expect_err "--lora without a name" "expects NAME=PATH" $HERD serve --port 0 -m $M --lora "$T/ad1"
expect_err "--lora name twice" "given twice" $HERD serve --port 0 -m $M --lora a="$T/ad1" --lora a="$T/ad2"
expect_err "--lora bad path" "\-\-lora x: .*no such file" $HERD serve --port 0 -m $M --lora x="$T/nope"
expect_err "--lora named as the model" "the model's own id" $HERD serve --port 0 -m $M --lora m.gguf="$T/ad1"
start_server main -t 1 -m $M --parallel 4 -c 512 --lora one="$T/ad1" --lora two="$T/ad2.gguf" || { summary; exit 1; }
B=$URL
check "startup names the adapters" grep -q "adapter 'two' (.*ad2.gguf): rank 4, 8 projections" "$T/main.log"
C $B/v1/models > "$T/models"
check "models: the model and its adapters: $(cat "$T/models")" jqe '[.data[] | [.id, .parent]] == [["m.gguf", null], ["one", "m.gguf"], ["two", "m.gguf"]]' "$T/models"
check "model by id: an adapter" bash -c "C() { curl -s --max-time 5 \"\$@\"; }; C $B/v1/models/two | jq -e '.id == \"two\" and .parent == \"m.gguf\"' >/dev/null"
check "unknown model by id: 404" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 $B/v1/models/three) = 404 ]"
C $B/v1/completions -d '{"model":"three","prompt":"hi","max_tokens":2}' > "$T/e404"
check "unknown model: model_not_found naming the adapters" jqe '.error.code == "model_not_found" and (.error.message | test("LoRA adapters"))' "$T/e404"

comp() { C $B/v1/completions -d "{\"model\":\"$1\",\"prompt\":\"$P\",\"max_tokens\":16,\"temperature\":0}"; }
for mdl in m.gguf one two; do comp $mdl > "$T/s_$mdl"; done
for f in m.gguf:g0 one:g1 two:g2; do
    mdl=${f%%:*}; ref=${f##*:}
    check "completion of $mdl = herd generate's: $(jq -r '.choices[0].text' "$T/s_$mdl" | head -c 80) | $(head -c 80 "$T/$ref")" \
        bash -c "[ \"\$(jq -r '.choices[0].text' $T/s_$mdl)\" = \"\$(cat $T/$ref)\" ] && jq -e '.model == \"$mdl\"' $T/s_$mdl >/dev/null"
done
# nine concurrent requests of the three models: each = its answer alone
for i in 1 2 3; do for mdl in m.gguf one two; do comp $mdl > "$T/cc_${mdl}_$i" & done; done
for i in 1 2 3; do for mdl in m.gguf one two; do
    for _ in $(seq 300); do [ -s "$T/cc_${mdl}_$i" ] && jq -e . "$T/cc_${mdl}_$i" >/dev/null 2>&1 && break; sleep 0.1; done
done; done
same=0
for i in 1 2 3; do for mdl in m.gguf one two; do
    [ "$(jq -c .choices "$T/cc_${mdl}_$i")" = "$(jq -c .choices "$T/s_$mdl")" ] && same=$((same+1))
done; done
check "concurrent requests of two adapters and the model = alone ($same of 9)" [ $same -eq 9 ]

# the KV cache is shared within an adapter, never across
chat() { C $B/v1/chat/completions -d "{\"model\":\"$1\",\"messages\":[{\"role\":\"system\",\"content\":\"You are a careful assistant who answers in one short sentence.\"},{\"role\":\"user\",\"content\":\"$2\"}],\"max_tokens\":4,\"temperature\":0}"; }
chat m.gguf "first question" > "$T/k0"
chat one "first question" > "$T/k1"
chat one "first question" > "$T/k1b"
chat two "second question" > "$T/k2"
chat one "second question" > "$T/k1c"
# (at most the BOS comes from the cache: the adapter's own completions above began with it)
check "a prompt cached for the model is not reused by an adapter: $(jq -c .usage "$T/k1")" jqe '.usage.prompt_tokens_details.cached_tokens <= 1 and .model == "one"' "$T/k1"
check "the same adapter's repeat reuses it: $(jq -c .usage "$T/k1b")" jqe '.usage.prompt_tokens_details.cached_tokens == .usage.prompt_tokens - 1' "$T/k1b"
check "another adapter shares no system prompt: $(jq -c .usage "$T/k2")" jqe '.usage.prompt_tokens_details.cached_tokens <= 1' "$T/k2"
check "its own adapter shares the system prompt: $(jq -c .usage "$T/k1c")" jqe '.usage.prompt_tokens_details.cached_tokens > 10' "$T/k1c"
# streamed, and embeddings, under an adapter
C -N $B/v1/chat/completions -d '{"model":"two","messages":[{"role":"user","content":"hi"}],"max_tokens":4,"temperature":0,"stream":true}' > "$T/sse"
check "streamed chunks name the adapter" bash -c "grep -q '\"model\":\"two\"' $T/sse && tail -2 $T/sse | head -1 | grep -qx 'data: \[DONE\]'"
C $B/v1/embeddings -d '{"model":"one","input":"hello"}' > "$T/emb1"
C $B/v1/embeddings -d '{"model":"m.gguf","input":"hello"}' > "$T/emb0"
check "embeddings under an adapter differ from the model's" bash -c "jq -e '.model == \"one\"' $T/emb1 >/dev/null && [ \"\$(jq -c .data $T/emb1)\" != \"\$(jq -c .data $T/emb0)\" ]"
# /metrics by model: requests and tokens of the model and of each adapter
C $B/metrics > "$T/metrics"
check "metrics: requests by model: $(grep '^herd_model_requests_total' "$T/metrics" | tr '\n' ' ')" bash -c \
    "grep -q '^herd_model_requests_total{model=\"m.gguf\"} [1-9]' $T/metrics && grep -q '^herd_model_requests_total{model=\"one\"} [1-9]' $T/metrics && grep -q '^herd_model_requests_total{model=\"two\"} [1-9]' $T/metrics"
check "metrics: the per-model counts add up to the totals" bash -c "
    r=\$(awk '/^herd_model_requests_total/ {s += \$2} END {print s}' $T/metrics); t=\$(awk '/^herd_requests_total / {print \$2}' $T/metrics)
    g=\$(awk '/^herd_model_generated_tokens_total/ {s += \$2} END {print s}' $T/metrics); h=\$(awk '/^herd_generated_tokens_total / {print \$2}' $T/metrics)
    [ \"\$r\" = \"\$t\" ] && [ \"\$g\" = \"\$h\" ] && [ \"\$g\" -gt 0 ]"

# the official openai npm client: adapters are models to it
if command -v node >/dev/null && [ -d tests/openai_client/node_modules/openai ]; then
    if HERD_URL="$B/v1" HERD_MODEL=m.gguf HERD_ADAPTERS=one,two timeout 60 node tests/openai_client/lora.mjs > "$T/node.log" 2>&1; then ok
    else bad "openai client with adapters: $(tail -5 "$T/node.log")"; fi
else
    echo "cli_lora: SKIP openai npm client (needs node and tests/openai_client/node_modules: npm ci there)"
fi
code() { curl -s -o "$T/body" -w '%{http_code}' --max-time 30 "$@"; }
check "without --lora-runtime there is no load endpoint" bash -c "[ \$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 $B/v1/load_lora_adapter -d '{}') = 404 ]"
kill -TERM $main_pid; wait $main_pid 2>/dev/null
check "SIGTERM: exit 0" [ $? -eq 0 ]

# ---- adapters loaded and unloaded while the server runs (--lora-runtime, vLLM's endpoints)
start_server rt -t 1 -m $M --parallel 2 -c 4096 --lora-runtime || { summary; exit 1; }
R=$URL
load() { code $R/v1/load_lora_adapter -d "{\"lora_name\":\"$1\",\"lora_path\":\"$2\"}"; }
unload() { code $R/v1/unload_lora_adapter -d "{\"lora_name\":\"$1\"}"; }
rcomp() { C $R/v1/completions -d "{\"model\":\"$1\",\"prompt\":\"$P\",\"max_tokens\":16,\"temperature\":0}"; }
check "no adapters at first" jqe '[.data[].id] == ["m.gguf"]' <(C $R/v1/models)
check "load: 200 $(cat "$T/body" 2>/dev/null)" [ "$(load rt "$T/ad1")" = 200 ]
check "load says so" grep -q "Success: LoRA adapter 'rt' added successfully." "$T/body"
check "listed after loading" jqe '[.data[] | [.id, .parent]] == [["m.gguf", null], ["rt", "m.gguf"]]' <(C $R/v1/models)
rcomp rt > "$T/rt1"
check "a loaded adapter answers as herd generate --lora: $(jq -r '.choices[0].text' "$T/rt1" | head -c 60)" \
    bash -c "[ \"\$(jq -r '.choices[0].text' $T/rt1)\" = \"\$(cat $T/g1)\" ]"
check "loading a loaded name: 400" [ "$(load rt "$T/ad2")" = 400 ]
check "... saying so: $(head -c 200 "$T/body")" jqe '.error.message | test("already loaded")' "$T/body"
check "loading a bad path: 400" [ "$(load bad "$T/nope")" = 400 ]
check "... naming the problem: $(head -c 200 "$T/body")" jqe '.error.param == "lora_path" and (.error.message | test("no such file"))' "$T/body"
check "loading under the model's name: 400" [ "$(load m.gguf "$T/ad1")" = 400 ]
check "no lora_path: 400" [ "$(code $R/v1/load_lora_adapter -d '{"lora_name":"x"}')" = 400 ]
check "a bad name: 400" [ "$(code $R/v1/load_lora_adapter -d '{"lora_name":"a b","lora_path":"/x"}')" = 400 ]
check "not JSON: 400" [ "$(code $R/v1/load_lora_adapter -d '{')" = 400 ]
check "GET: 405" [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 $R/v1/unload_lora_adapter)" = 405 ]
# unloaded while a long answer streams: that answer ends normally, new requests get a 404
C -N $R/v1/completions -d "{\"model\":\"rt\",\"prompt\":\"$P\",\"max_tokens\":3500,\"ignore_eos\":true,\"temperature\":0,\"stream\":true}" > "$T/long" &
lp=$!
for _ in $(seq 100); do [ -s "$T/long" ] && break; sleep 0.05; done
check "the long answer is still streaming when the adapter is unloaded" kill -0 $lp
check "unload: 200" [ "$(unload rt)" = 200 ]
check "an unloaded adapter stays in memory while a request uses it" bash -c "curl -s --max-time 5 $R/metrics | grep -qx 'herd_lora_adapters_in_memory 1'"
check "... says so" grep -q "Success: LoRA adapter 'rt' removed successfully." "$T/body"
check "an unloaded adapter: 404 model_not_found" bash -c "C() { curl -s --max-time 10 \"\$@\"; }; C $R/v1/completions -d '{\"model\":\"rt\",\"prompt\":\"x\",\"max_tokens\":2}' | jq -e '.error.code == \"model_not_found\"' >/dev/null"
check "unloading it again: 404" [ "$(unload rt)" = 404 ]
wait $lp
check "the streaming answer under the unloaded adapter finished: $(tail -c 200 "$T/long")" bash -c "grep -q '\"finish_reason\":\"length\"' $T/long && tail -2 $T/long | head -1 | grep -qx 'data: \[DONE\]'"
check "no longer listed" jqe '[.data[].id] == ["m.gguf"]' <(C $R/v1/models)
for _ in $(seq 50); do C $R/metrics | grep -qx 'herd_lora_adapters_in_memory 0' && break; sleep 0.1; done
check "... and freed once its last request ended and the slot let go" bash -c "curl -s --max-time 5 $R/metrics | grep -qx 'herd_lora_adapters_in_memory 0'"
# the same name, another adapter: its own answers (no cache of the first one reused)
check "reloading the name with another adapter: 200" [ "$(load rt "$T/ad2.gguf")" = 200 ]
rcomp rt > "$T/rt2"
check "... answers as that adapter: $(jq -r '.choices[0].text' "$T/rt2" | head -c 60)" \
    bash -c "[ \"\$(jq -r '.choices[0].text' $T/rt2)\" = \"\$(cat $T/g2)\" ]"
# the table holds 16: a 17th is refused, unloading makes room
for i in $(seq 2 16); do load "a$i" "$T/ad1" >/dev/null; done
check "16 adapters listed" jqe '.data | length == 17' <(C $R/v1/models)
check "a 17th: 400" [ "$(load a17 "$T/ad1")" = 400 ]
check "... saying why: $(head -c 200 "$T/body")" jqe '.error.message | test("the most a server holds")' "$T/body"
for i in $(seq 2 16); do unload "a$i" >/dev/null; done
check "unloading made room" [ "$(load a17 "$T/ad1")" = 200 ]
rcomp a17 > "$T/rt3"
check "... and it answers: $(jq -r '.choices[0].text' "$T/rt3" | head -c 60)" bash -c "[ \"\$(jq -r '.choices[0].text' $T/rt3)\" = \"\$(cat $T/g1)\" ]"
C $R/metrics > "$T/m2"
check "metrics list the adapters served now: $(grep '^herd_model_requests_total' "$T/m2" | tr '\n' ' ')" bash -c \
    "[ \$(grep -c '^herd_model_requests_total' $T/m2) = 3 ] && grep -q '^herd_model_requests_total{model=\"a17\"} 1$' $T/m2 && grep -q '^herd_model_requests_total{model=\"rt\"} 1$' $T/m2"
kill -TERM $rt_pid; wait $rt_pid 2>/dev/null
check "SIGTERM with runtime adapters: exit 0" [ $? -eq 0 ]
summary
