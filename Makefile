# herd - build with `make`, test with `make test`, sanitizers with `make SAN=1 test`.
# Every src/**/*.c goes into libherd.a; tools/herd.c is the CLI; each tests/test_*.c
# is one test program linked against the library.
CC      ?= cc
SAN     ?= 0
ifeq ($(SAN),1)
BUILD   := build-san
OPT     := -O1 -g -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer
else
BUILD   := build
OPT     := -O2 -g
endif
CFLAGS  += -std=gnu11 $(OPT) -Wall -Wextra -Werror -Wno-unused-parameter -fopenmp -Iinclude -Isrc $(shell pkg-config --cflags libpcre2-8 libcjson 2>/dev/null)
LDLIBS  += -fopenmp -lpcre2-8 -lcjson -lmicrohttpd -lm -lpthread
ifeq ($(SAN),1)
LDFLAGS += -fsanitize=address,undefined,float-cast-overflow
endif

SRC     := $(shell find src -name '*.c' | sort)
OBJ     := $(SRC:%.c=$(BUILD)/%.o)
TESTS   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
HERD    := $(BUILD)/herd
HELPERS := $(BUILD)/tests/mk_lora  # test helpers (not tests): random LoRA adapters

all: $(HERD) herd-link $(TESTS) $(HELPERS)

herd-link: $(HERD)
	@if [ "$(SAN)" = 0 ]; then ln -sf $(HERD) herd; fi

$(BUILD)/libherd.a: $(OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Per-file extra flags: SIMD kernels are compiled for their ISA and chosen at run time,
# their loops starting on a cache line: where a hot loop falls is otherwise decided
# by the link, and a change elsewhere moved the 2-token decode kernel's loop and
# made bench_batch's 2-sequence step 15-20% slower (1B Q4_0, 2 threads, interleaved;
# aligned, against that link: 1 sequence 14.0-14.3 vs 14.7 ms, 2: 14.4-14.9 vs 15.4-15.5).
$(BUILD)/src/kernels/cpu/%_avx512.o: CFLAGS += -falign-loops=64 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mfma -mf16c -mavx2
$(BUILD)/src/kernels/cpu/%_avx2.o: CFLAGS += -falign-loops=64 -mavx2 -mfma -mf16c
$(BUILD)/src/train/%_avx2.o: CFLAGS += -mavx2 -mfma

$(BUILD)/%.o: %.c $(shell find include src -name '*.h')
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(HERD): $(wildcard tools/*.c) tools/cli.h $(BUILD)/libherd.a
	$(CC) $(CFLAGS) -Itools $(wildcard tools/*.c) $(BUILD)/libherd.a $(LDFLAGS) $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c tests/test.h tests/lora_writer.h $(BUILD)/libherd.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests $< $(BUILD)/libherd.a $(LDFLAGS) $(LDLIBS) -o $@

test: all
	BUILD=$(BUILD) bash tests/run.sh

# libFuzzer targets (clang): make fuzz; run with build-fuzz/fuzz_gguf -max_total_time=30
# The parsers under fuzz need no kernels: link just them.
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)
FUZZ_LIB := src/core/core.c src/core/config.c $(wildcard src/format/*.c) src/tokenizer.c src/tokenizer_io.c src/chat.c src/json_grammar.c
FUZZ_API_LIB := src/server/api.c src/server/parse.c src/server/adapters.c src/server/toolcall.c src/server/responses.c src/server/embed.c # fuzz_api: the model is a stand-in in the target
fuzz:
	@mkdir -p build-fuzz
	for f in $(FUZZ_SRC); do n=$$(basename $$f .c); x=; [ $$n = fuzz_api ] && x="$(FUZZ_API_LIB)"; \
	  clang -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Iinclude -Isrc $(shell pkg-config --cflags libcjson 2>/dev/null) $$f $(FUZZ_LIB) $$x -lpcre2-8 -lcjson -lm -lpthread -o build-fuzz/$$n || exit 1; done

# Attention benchmark (bench/attn_bench.c; not part of `make test`): make attn-bench && build/attn_bench
attn-bench: $(BUILD)/attn_bench
$(BUILD)/attn_bench: bench/attn_bench.c $(BUILD)/libherd.a
	$(CC) $(CFLAGS) $< $(BUILD)/libherd.a $(LDFLAGS) $(LDLIBS) -o $@

# Fork/join cost of OpenMP against a spinning pool (bench/fork_join.c): make fork-join && build/fork_join
fork-join: $(BUILD)/fork_join
$(BUILD)/fork_join: bench/fork_join.c
	$(CC) $(CFLAGS) $< -lpthread -o $@

clean:
	rm -rf build build-san build-fuzz herd

.PHONY: all test fuzz clean herd-link attn-bench fork-join
