#!/bin/bash
# prepare_corpus.sh - public-domain prose for herd's tokenizer and default model,
# from Debian packages only: the six Jane Austen novels in r-cran-janeaustenr (an R
# data package; Rscript, which comes with it, prints them as plain text), or, when
# that cannot be installed, the King James Bible from bible-kjv (its `bible` tool).
#
# Writes (data/ is gitignored):
#   data/corpus/<book>.txt      the first ~95% of each book (training text)
#   data/corpus/val/<book>.txt  the rest, cut at a paragraph break (held-out text)
# Usage: scripts/prepare_corpus.sh [OUT_DIR]    (default data/corpus)
set -euo pipefail
OUT=${1:-data/corpus}
VAL_FRACTION=0.05
SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo

have_austen() { command -v Rscript >/dev/null && Rscript -e 'library(janeaustenr)' >/dev/null 2>&1; }

if ! have_austen; then
    echo "prepare_corpus: installing r-cran-janeaustenr (Debian) ..." >&2
    $SUDO apt-get install -y --no-install-recommends r-cran-janeaustenr >&2 || true
fi
mkdir -p "$OUT/val"

if have_austen; then
    # Each book is a character vector, one element per line of the printed novel.
    Rscript - "$OUT" "$VAL_FRACTION" <<'R'
args <- commandArgs(trailingOnly = TRUE)
out <- args[1]; frac <- as.numeric(args[2])
library(janeaustenr)
books <- list(sense_and_sensibility = sensesensibility, pride_and_prejudice = prideprejudice,
              mansfield_park = mansfieldpark, emma = emma,
              northanger_abbey = northangerabbey, persuasion = persuasion)
for (name in names(books)) {
    x <- books[[name]]
    n <- length(x)
    k <- floor((1 - frac) * n)
    while (k < n && nchar(x[k]) > 0) k <- k + 1   # end the training part at a blank line
    con <- file(file.path(out, paste0(name, ".txt")), "wb")
    writeLines(enc2utf8(x[1:k]), con, useBytes = TRUE); close(con)
    con <- file(file.path(out, "val", paste0(name, ".txt")), "wb")
    writeLines(enc2utf8(x[(k + 1):n]), con, useBytes = TRUE); close(con)
}
R
    src="Jane Austen (r-cran-janeaustenr)"
else
    echo "prepare_corpus: r-cran-janeaustenr unavailable; falling back to bible-kjv" >&2
    command -v bible >/dev/null || $SUDO apt-get install -y --no-install-recommends bible-kjv >&2
    bible -f "Gen1:1-Rev22:21" > "$OUT/.kjv.txt"
    n=$(wc -l < "$OUT/.kjv.txt")
    k=$(awk -v n="$n" -v f="$VAL_FRACTION" 'BEGIN { printf "%d", (1 - f) * n }')
    head -n "$k" "$OUT/.kjv.txt" > "$OUT/bible_kjv.txt"
    tail -n +"$((k + 1))" "$OUT/.kjv.txt" > "$OUT/val/bible_kjv.txt"
    rm -f "$OUT/.kjv.txt"
    src="King James Bible (bible-kjv)"
fi
echo "prepare_corpus: $src -> $OUT: $(cat "$OUT"/*.txt | wc -c) bytes training text," \
     "$(cat "$OUT"/val/*.txt | wc -c) bytes held out in $OUT/val" >&2
