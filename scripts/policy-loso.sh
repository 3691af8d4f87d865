#!/usr/bin/env bash
# Leave-one-set-out measurement of the channel policy with its learned scorer: for each labelled
# set, the scorer is trained on the other sets only (scripts/policy-scorer.py --leave-out), built
# into salve-core, and the held-out set is scored. The shipped weights are put back at the end.
#
#     python3 -m pip install -r scripts/policy-scorer-requirements.txt
#     scripts/policy-loso.sh
set -euo pipefail
cd "$(dirname "$0")/.."
data=crates/salve-core/data/policy
weights=$data/scorer/weights.tsv
cp "$weights" /tmp/policy-scorer-shipped.tsv
trap 'cp /tmp/policy-scorer-shipped.tsv "$weights"' EXIT
python3 scripts/policy-scorer.py --leave-out
for f in /tmp/policy-scorer/*.tsv; do
  set_name=$(basename "$f" .tsv)
  cp "$f" "$weights"
  cargo run -q --release -p salve-core --example policy_report -- "$data/$set_name.jsonl" --quiet
done
