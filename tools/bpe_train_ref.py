#!/usr/bin/env python3
# bpe_train_ref.py - naive, independent reference for src/bpe_train.c: the same Llama 3
# split regex (python3-regex), piece counts, most frequent pair first, ties to the
# smaller (rank a, rank b), pairs over 160 bytes never counted. Prints tokenizer.model
# lines for the 256 bytes + learned ranks (no specials), so
#   cmp <(python3 tools/bpe_train_ref.py FILE M) <(herd tokenizer train -i FILE --vocab $((512+M)) -o D; cat D/tokenizer.model)
# checks herd. O(merges x corpus): use ~300 KB and a few hundred merges. UTF-8 text only.
import regex, sys, collections, base64
PAT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
text = open(sys.argv[1], encoding='utf-8').read()
nmerge = int(sys.argv[2])
words = collections.Counter(m.encode() for m in regex.findall(PAT, text))
toks = [bytes([i]) for i in range(256)]; index = {t: i for i, t in enumerate(toks)}
seqs = {w: list(w) for w in words if len(w) >= 2}
for step in range(nmerge):
    pc = collections.Counter()
    for w, s in seqs.items():
        for a, b in zip(s, s[1:]):
            if len(toks[a]) + len(toks[b]) <= 160: pc[(a, b)] += words[w]
    if not pc: break
    best = min(pc, key=lambda p: (-pc[p], p))
    nb = toks[best[0]] + toks[best[1]]
    if nb in index: z = index[nb]
    else: z = len(toks); toks.append(nb); index[nb] = z
    for w, s in seqs.items():
        o = []; i = 0
        while i < len(s):
            if i + 1 < len(s) and (s[i], s[i+1]) == best: o.append(z); i += 2
            else: o.append(s[i]); i += 1
        seqs[w] = o
for i, t in enumerate(toks): print(base64.b64encode(t).decode(), i)
