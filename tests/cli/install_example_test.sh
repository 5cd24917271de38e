#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The device library as a user gets it: `cmake --install` into a fresh prefix, then the example
# (examples/minimal) configured with find_package(fwdepot) from that prefix, built, and run
# against a real server on loopback until it has installed the update.
set -euo pipefail
source_dir=$1
build_dir=$2
work=$(mktemp -d)
server=""
drain=""
cleanup() {
  for pid in $server $drain; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
[ -f "$work/prefix/lib/cmake/fwdepot/fwdepotConfig.cmake" ] || fail "no package config installed"
[ -f "$work/prefix/include/fwdepot/client/updater.hpp" ] || fail "no client headers installed"
[ ! -e "$work/prefix/include/fwdepot/server" ] || fail "server headers installed"
cmake -S "$source_dir/examples/minimal" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; fail "configure"; }
cmake --build "$work/example" -j2 >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "build"; }
example="$work/example/minimal"

# Against a real server: init, a device, a signed image deployed to its model.
fwdepot="$work/prefix/bin/fwdepot"
cd "$work"
"$fwdepot" init --data d >/dev/null
"$fwdepot" certs issue-device --data d --id dev-ex --model board --out dev >/dev/null
token=$("$fwdepot" token create --data d --name example 2>/dev/null)
head -c 50000 /dev/urandom >fw.bin
"$fwdepot" sign --key d/keys/signing.key --name fw --version 1.2.0 --model board --out fw.dsse \
  fw.bin >/dev/null
mkfifo log.fifo
"$fwdepot" serve --data d --device-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
  --coaps-listen 127.0.0.1:0 >log.fifo 2>&1 &
server=$!
exec 3<log.fifo
listening=""
while IFS= read -r -t 30 -u 3 line; do
  case "$line" in *" listening "*) listening=$line; break ;; esac
done
[ -n "$listening" ] || fail "server did not start"
cat <&3 >/dev/null &  # keep draining the log so the server never blocks on it
drain=$!
admin=$(sed -n 's/.* admin=\([^ ]*\) .*/\1/p' <<<"$listening")
device=$(sed -n 's/.* device=\([^ ]*\) .*/\1/p' <<<"$listening")
curl -sS --max-time 30 --cacert d/pki/ca.pem -H "Authorization: Bearer $token" \
  -F manifest=@fw.dsse -F image=@fw.bin "https://$admin/api/v1/images" | grep -q '"id":1,' ||
  fail "upload"
curl -sS --max-time 30 --cacert d/pki/ca.pem -H "Authorization: Bearer $token" \
  -d '{"image_id":1,"models":["board"]}' "https://$admin/api/v1/deployments" >/dev/null

out=$("$example" "https://$device" dev.pem dev.key d/pki/ca.pem d/keys/signing.pub board state)
[ "$out" = "updated to 1.2.0" ] || fail "example said: $out"
cmp -s state/firmware.bin fw.bin || fail "installed bytes differ"
out=$("$example" "https://$device" dev.pem dev.key d/pki/ca.pem d/keys/signing.pub board state)
[ "$out" = "up to date at 1.2.0" ] || fail "second run said: $out"
echo ok
