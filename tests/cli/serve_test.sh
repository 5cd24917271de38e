#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make run` end to end: scripts/run starts `fwdepot serve` on ephemeral ports and prints curl
# commands, which are run here exactly as printed. Then a 256 MiB image is uploaded and
# downloaded while the server's peak memory is read from /proc, SIGHUP reloads the CRL, and
# SIGTERM stops the server cleanly.
set -euo pipefail
source_dir=$1
build_dir=$2
work=$(mktemp -d)
runner=""
cleanup() {
  if [ -n "$runner" ] && kill -0 "$runner" 2>/dev/null; then
    kill -TERM "$runner" 2>/dev/null || true
    wait "$runner" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
fail() {
  echo "FAIL: $*" >&2
  [ -f var/serve.log ] && tail -20 var/serve.log >&2
  exit 1
}

mkfifo out.fifo
bash "$source_dir/scripts/run" "$build_dir" var --device-listen 127.0.0.1:0 \
  --admin-listen 127.0.0.1:0 --coaps-listen 127.0.0.1:0 >out.fifo 2>run.err &
runner=$!
exec 3<out.fifo
# Blocking reads, each bounded: the printed commands end with a marker line.
commands=""
in_commands=0
while IFS= read -r -t 60 -u 3 line; do
  echo "$line" >>out.txt
  case "$line" in
    "# --- commands ---") in_commands=1 ;;
    "# --- end ---") break ;;
    *) [ "$in_commands" = 1 ] && commands+="$line"$'\n' ;;
  esac
done
[ "$in_commands" = 1 ] || fail "scripts/run printed no commands: $(cat out.txt run.err)"
[ "$(grep -c '^curl ' <<<"$commands")" = 5 ] || fail "expected 5 curl commands"

# The printed commands, verbatim: upload, deploy, check in, download, history.
mapfile -t lines <<<"$commands"
eval "${lines[0]}"  # TOKEN=...
upload=$(eval "${lines[1]} --silent --show-error")
grep -q '"id":1,' <<<"$upload" || fail "upload: $upload"
deploy=$(eval "${lines[2]} --silent --show-error")
grep -q '"active":true' <<<"$deploy" || fail "deploy: $deploy"
offer=$(eval "${lines[3]} --silent --show-error")
grep -q '"update":{"image_id":1,' <<<"$offer" || fail "check-in: $offer"
eval "${lines[4]} --silent --show-error"
cmp -s var/demo/downloaded.bin var/demo/demo-1.1.0.bin || fail "downloaded bytes differ"
history=$(eval "${lines[5]} --silent --show-error")
grep -q '"state":"idle","version":"1.0.0"' <<<"$history" || fail "history: $history"

pid=$(sed -n 's/.* listening pid=\([0-9]*\) .*/\1/p' var/serve.log)
[ -n "$pid" ] && kill -0 "$pid" || fail "no server pid in the log"
admin=$(sed -n 's/.* admin=\([^ ]*\) .*/\1/p' var/serve.log)
device=$(sed -n 's/.* device=\([^ ]*\) .*/\1/p' var/serve.log)
ca=var/pki/ca.pem
auth="Authorization: Bearer $TOKEN"

# 256 MiB through the server: memory must not grow with the image (peak RSS from the kernel).
head -c $((256 * 1024 * 1024)) /dev/urandom >big.bin
"$build_dir/cli/fwdepot" sign --key var/keys/signing.key --name big --version 2.0.0 \
  --model demo-board --out big.dsse big.bin >/dev/null
big=$(curl --silent --show-error --max-time 120 --cacert "$ca" -H "$auth" -F manifest=@big.dsse \
  -F image=@big.bin "https://$admin/api/v1/images")
grep -q '"size":268435456' <<<"$big" || fail "256 MiB upload: $big"
big_id=$(sed -n 's/^{"id":\([0-9]*\),.*/\1/p' <<<"$big")
curl --silent --show-error --max-time 30 --cacert "$ca" -H "$auth" \
  -d "{\"image_id\":$big_id,\"devices\":[\"demo-device\"]}" "https://$admin/api/v1/deployments" \
  >/dev/null
dev=(--cacert "$ca" --cert var/demo/device.pem --key var/demo/device.key)
curl --silent --show-error --max-time 30 "${dev[@]}" \
  -d '{"model":"demo-board","version":"1.1.0","state":"idle"}' \
  "https://$device/api/v1/device/checkin" | grep -q "\"image_id\":$big_id" || fail "no big offer"
curl --silent --show-error --max-time 120 "${dev[@]}" -o big.got \
  "https://$device/api/v1/device/images/$big_id"
cmp -s big.got big.bin || fail "256 MiB download differs"
peak_kib=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status")
echo "server peak RSS after a 256 MiB upload and download: $((peak_kib / 1024)) MiB"
# Under a sanitizer (make test-asan/test-tsan set FWDEPOT_SANITIZED) shadow memory and the
# allocator's quarantine make RSS meaningless: the bound is checked in ordinary builds only.
if [ -z "${FWDEPOT_SANITIZED:-}" ]; then
  [ "$peak_kib" -lt $((64 * 1024)) ] || fail "server peak RSS ${peak_kib} KiB: not constant memory"
fi

# SIGHUP reloads the CRL; the server keeps serving. The log is followed as a stream, and each
# blocking read is bounded, until the reload's line appears.
loaded=$(grep -c ' crl_loaded ' var/serve.log)
exec 4< <(tail -n +1 -f var/serve.log)
follower=$!
kill -HUP "$pid"
seen=0
while IFS= read -r -t 10 -u 4 line; do
  case "$line" in *" crl_loaded "*) seen=$((seen + 1)) ;; esac
  [ "$seen" -gt "$loaded" ] && break
done
kill "$follower"
exec 4<&-
[ "$seen" -gt "$loaded" ] || fail "CRL not reloaded on SIGHUP"
grep -q 'action=reload_tls' var/serve.log || fail "SIGHUP not logged"
curl --silent --show-error --max-time 10 --cacert "$ca" "https://$admin/healthz" | grep -q ok ||
  fail "not serving after SIGHUP"

# SIGTERM to `make run` stops the server, which logs its stop; the script exits 0.
kill -TERM "$runner"
wait "$runner" || fail "scripts/run exited with $?"
runner=""
kill -0 "$pid" 2>/dev/null && fail "server still running after SIGTERM"
grep -q ' info stopped' var/serve.log || fail "no clean stop in the log"
grep -q "$TOKEN" var/serve.log && fail "the admin token appears in the log"
echo "ok"
