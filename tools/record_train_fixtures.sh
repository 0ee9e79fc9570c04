#!/bin/bash
# record_train_fixtures.sh - writes the recorded PyTorch losses that tests/cli_train.sh
# checks `herd train` against (a dev tool; needs Debian's python3-torch):
#   tests/data/train_ref.tok      a byte-level token file (vocab 512) of repetitive prose
#   tests/data/train_ref_a.txt    20 AdamW steps, untied GQA model, cosine, 2 threads
#   tests/data/train_ref_b.txt    20 AdamW steps, tied MHA model, constant, accum 2
# Each fixture starts with `# init: FLAGS` (for herd init) and `# args: FLAGS` (for
# herd train and tools/train_ref.py), then `step S loss L` lines from train_ref.py.
set -euo pipefail
HERD=${HERD:-build/herd}
D=tests/data
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
# ~9 KB of text: a few sentences repeated, so that a tiny model's loss falls quickly
perl -e '
  my @s = ("The miller walked to the river at dawn, and the river was cold. ",
           "His daughter followed with a basket of bread and a jar of honey. ",
           "They sat on the stones and watched the mist rise from the water. ",
           "When the sun was high they went home along the old stone wall.\n");
  my $t = ""; for my $i (0 .. 35) { $t .= $s[($i * 3) % 4] . $s[$i % 4]; }
  my @b = unpack("C*", $t);
  print "HERDTOK1", pack("V V Q<", 1, 512, scalar @b), pack("V*", @b)' >"$D/train_ref.tok"
rec() {
    local name=$1 init=$2 args=$3 threads=$4
    $HERD init -o "$T/$name" $init 2>/dev/null
    { echo "# init: $init"; echo "# args: $args"
      /usr/bin/python3 tools/train_ref.py --model "$T/$name" --data "$D/train_ref.tok" $args \
          --threads "$threads" | grep '^step '; } >"$D/train_ref_$name.txt"
}
rec a "--seed 3 --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 160" \
      "--batch 4 --seq 32 --steps 20 --lr 3e-3 --wd 0.1 --warmup 5 --clip 1.0 --schedule cosine" 2
rec b "--seed 5 --dim 48 --layers 3 --heads 3 --kv-heads 3 --head-dim 16 --ffn 128 --tie" \
      "--batch 2 --seq 24 --steps 20 --lr 2e-3 --wd 0.05 --warmup 3 --clip 0.5 --schedule constant --accum 2" 1
echo "recorded $D/train_ref.tok, $D/train_ref_a.txt, $D/train_ref_b.txt" >&2
