#!/usr/bin/env bash
# Checks that third_party/badger is upstream Badger at the version below
# with badger.patch applied, and nothing else: every carried file equals
# upstream's except those the patch changes, which differ by exactly the
# patch. Run by make badger-check (and so by .ci/run).
set -euo pipefail
cd "$(dirname "$0")"
upstream=github.com/dgraph-io/badger/v4@v4.9.6
dir=$(cd badger && GOFLAGS=-mod=mod go mod download -json "$upstream" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "check-badger: cannot download $upstream" >&2; exit 1; }
patched=$(sed -n 's/^+++ b\/\([^[:space:]]*\).*/\1/p' badger.patch)
fail=0
for pkg in . fb options pb skl table trie y; do
  for f in "$dir/$pkg"/*.go; do
    [ -e "badger/$pkg/${f##*/}" ] || { echo "missing: badger/$pkg/${f##*/}"; fail=1; }
  done
done
while IFS= read -r f; do
  f=${f#./}
  if grep -qxF "$f" <<<"$patched"; then
    continue
  fi
  cmp -s "$dir/$f" "badger/$f" || { echo "differs from upstream (not in badger.patch): badger/$f"; fail=1; }
done < <(cd badger && find . -type f)
got=$(for f in $patched; do diff -u --label "a/$f" --label "b/$f" "$dir/$f" "badger/$f" || true; done)
if [ "$got" != "$(cat badger.patch)" ]; then
  echo "the patched files differ from upstream by something other than badger.patch:" >&2
  diff <(cat badger.patch) <(echo "$got") >&2 || true
  fail=1
fi
[ "$fail" = 0 ] && echo "third_party/badger = $upstream + badger.patch"
exit "$fail"
