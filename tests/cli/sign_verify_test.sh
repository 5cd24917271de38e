#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# End to end: keys generate, sign, verify with the real binary; verify must fail after any
# single byte of the image or of the manifest is flipped.
set -euo pipefail
fwdepot=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

fail() { echo "FAIL: $*" >&2; exit 1; }

"$fwdepot" keys generate --type ecdsa-p256 --out release >/dev/null
"$fwdepot" keys generate --type ed25519 --out second >/dev/null
[ "$(stat -c %a release.key)" = 600 ] || fail "private key is not mode 600"
grep -q 'BEGIN PUBLIC KEY' release.pub || fail "no public key written"
if "$fwdepot" keys generate --out release 2>err.txt; then fail "keys generate overwrote a key"; fi
grep -q 'already exists' err.txt || fail "overwrite refusal not explained: $(cat err.txt)"

head -c 256 /dev/urandom > image.bin
"$fwdepot" sign --key release.key --key second.key --name demo --version 1.2.0 \
  --model board-a --model board-b image.bin --out image.dsse.json >/dev/null
"$fwdepot" verify --pub release.pub --manifest image.dsse.json image.bin >/dev/null ||
  fail "a good image does not verify"
"$fwdepot" verify --pub release.pub --pub second.pub --threshold 2 \
  --manifest image.dsse.json image.bin >/dev/null || fail "2-of-2 does not verify"

# A key that did not sign, and a threshold that cannot be met.
"$fwdepot" keys generate --out stranger >/dev/null
if "$fwdepot" verify --pub stranger.pub --manifest image.dsse.json image.bin 2>err.txt; then
  fail "an untrusted key verified"
fi
grep -q 'threshold not met' err.txt || fail "unexpected error: $(cat err.txt)"
[ "$(wc -l < err.txt)" -eq 1 ] || fail "error is not one line"

# Exit code 1 with the reason on any flipped byte. Both keys are required (threshold 2), so a
# flip inside either signature must be caught too.
check_flips() {
  local file=$1 hex size offset rc byte
  hex=$(xxd -p "$file" | tr -d '\n')
  size=$(( ${#hex} / 2 ))
  cp "$file" "$file.orig"
  for ((offset = 0; offset < size; offset++)); do
    byte=$(( 16#${hex:$((offset * 2)):2} ^ 1 ))
    printf '%s%02x%s' "${hex:0:$((offset * 2))}" "$byte" "${hex:$((offset * 2 + 2))}" |
      xxd -r -p > "$file"
    rc=0
    "$fwdepot" verify --pub release.pub --pub second.pub --threshold 2 \
      --manifest image.dsse.json image.bin >/dev/null 2>err.txt || rc=$?
    [ "$rc" -eq 1 ] || fail "flipping byte $offset of $file: exit $rc, expected 1"
    [ -s err.txt ] || fail "flipping byte $offset of $file: no reason given"
  done
  mv "$file.orig" "$file"
  echo "$file: all $size single-byte flips rejected"
}
check_flips image.bin
check_flips image.dsse.json

# Truncated and extended images.
head -c 255 image.bin > short.bin
if "$fwdepot" verify --pub release.pub --manifest image.dsse.json short.bin 2>/dev/null; then
  fail "a truncated image verified"
fi
cat image.bin <(printf x) > long.bin
if "$fwdepot" verify --pub release.pub --manifest image.dsse.json long.bin 2>/dev/null; then
  fail "an extended image verified"
fi
echo "PASS"
