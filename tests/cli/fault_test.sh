#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Faults, with real processes: the server killed -9 in the middle of a 256 MiB upload and in the
# middle of 20 downloads (a TCP relay freezes the traffic at a known point first); a disk that
# fills up during an upload; the database locked by another process. After each: no partial
# image is listed, PRAGMA integrity_check is ok, every blob matches its digest, the devices
# resume and finish, and the server keeps serving.
set -euo pipefail
fwdepot=$1
agent=$2
relay=$3
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

"$fwdepot" init --data d >/dev/null 2>&1
token=$("$fwdepot" token create --data d --name faults 2>/dev/null)
for i in $(seq -w 0 19); do
  "$fwdepot" certs issue-device --data d --id "dev-$i" --model m1 --out "dev-$i" >/dev/null
done
admin_api() {  # ADDRESS ARGS...
  local address=$1
  shift
  curl -sS --max-time 120 --cacert d/pki/ca.pem -H "Authorization: Bearer $token" "$@" \
    "https://$address"
}
sign() {  # FILE NAME VERSION MODEL
  "$fwdepot" sign --key d/keys/signing.key --name "$2" --version "$3" --model "$4" \
    --out "$1.dsse" "$1" >/dev/null
}
# The storage invariants after a crash: a sound database, and every blob named by its digest.
storage_sound() {
  [ "$(sqlite3 d/fwdepot.db 'PRAGMA integrity_check')" = ok ] || fail "integrity_check"
  local blob
  while IFS= read -r blob; do
    [ "$(sha256sum "$blob" | cut -c1-64)" = "$(basename "$blob")" ] || fail "blob $blob"
  done < <(find d/blobs/sha256 -type f)
}
# start_relay TARGET_PORT STALL_AFTER: sets relay_pid and relay_port.
start_relay() {
  : >relay.log
  python3 "$relay" --target "$1" --stall-after "$2" --lifetime 240 >relay.log 2>&1 &
  relay_pid=$!
  pids+=("$relay_pid")
  local first
  first=$(timeout 10 tail -n +1 -f --pid="$relay_pid" relay.log | grep -m1 '^listening ' || true)
  [ -n "$first" ] || fail "the relay did not start"
  relay_port=${first#listening }
}
wait_stalled() {
  local seen
  seen=$(timeout 120 tail -n +1 -f --pid="$relay_pid" relay.log | grep -m1 '^stalled' || true)
  [ -n "$seen" ] || fail "the relay never stalled"
}

head -c $((64 * 1024 * 1024)) /dev/urandom >fw.bin
sign fw.bin fw 1.1.0 m1
head -c $((256 * 1024 * 1024)) /dev/urandom >big.bin
sign big.bin big 2.0.0 m2

start_server d server.log
admin_api "$admin/api/v1/images" -F manifest=@fw.bin.dsse -F image=@fw.bin | grep -q '"id":1,' ||
  fail "upload of fw.bin"
admin_api "$admin/api/v1/deployments" -d '{"image_id":1,"models":["m1"]}' >/dev/null

# 1. kill -9 during a 256 MiB upload, 128 MiB in.
start_relay "${admin##*:}" $((128 * 1024 * 1024))
curl -sS --max-time 120 --cacert d/pki/ca.pem -H "Authorization: Bearer $token" \
  -F manifest=@big.bin.dsse -F image=@big.bin "https://127.0.0.1:$relay_port/api/v1/images" \
  >upload.out 2>&1 &
upload_pid=$!
pids+=("$upload_pid")
wait_stalled
kill -KILL "$server_pid"
wait "$server_pid" 2>/dev/null || true
partial=$(find d/blobs/tmp -type f -size +1M | wc -l)
[ "$partial" -ge 1 ] || fail "no partial upload on disk: the kill came too late to test anything"
kill -TERM "$relay_pid" "$upload_pid" 2>/dev/null || true
wait "$relay_pid" "$upload_pid" 2>/dev/null || true
start_server d server2.log
grep -q 'storage_recovery removed_temp_files=1' server2.log || fail "the partial upload was not removed"
[ -z "$(find d/blobs/tmp -type f)" ] || fail "temp files left"
images=$(admin_api "$admin/api/v1/images")
grep -q '"name":"big"' <<<"$images" && fail "a partial image is listed: $images"
storage_sound
echo "killed mid-upload: nothing listed, storage sound"

# 2. kill -9 during 20 concurrent downloads, with 320 MiB of the 1.25 GiB sent; the agents die
# too. Run again, each resumes from what it had made durable and finishes.
start_relay "${device##*:}" $((320 * 1024 * 1024))
agents=()
for i in $(seq -w 0 19); do
  # No `timeout` wrapper: the kill below must reach the agent itself. The stall bounds it.
  "$agent" --server "https://127.0.0.1:$relay_port" --cert "dev-$i.pem" \
    --key "dev-$i.key" --cacert d/pki/ca.pem --trusted-key d/keys/signing.pub --model m1 \
    --initial-version 1.0.0 --once --state-dir "s-$i" >"s-$i.cut" 2>&1 &
  agents+=("$!")
  pids+=("$!")
done
wait_stalled
kill -KILL "$server_pid" "${agents[@]}" 2>/dev/null || true
wait "$server_pid" "${agents[@]}" 2>/dev/null || true
kill -TERM "$relay_pid"
wait "$relay_pid" 2>/dev/null || true
start_server d server3.log
storage_sound
resumed=0
for i in $(seq -w 0 19); do
  timeout 120 "$agent" --server "https://$device" --cert "dev-$i.pem" --key "dev-$i.key" \
    --cacert d/pki/ca.pem --trusted-key d/keys/signing.pub --model m1 --initial-version 1.0.0 \
    --once --state-dir "s-$i" >"s-$i.out" 2>&1 &
  agents[10#$i]=$!
  pids+=("$!")
done
for i in $(seq -w 0 19); do
  wait "${agents[10#$i]}" || fail "dev-$i after the crash: $(cat "s-$i.out")"
  grep -q '^updated to 1.1.0$' "s-$i.out" && cmp -s "s-$i/firmware.bin" fw.bin ||
    fail "dev-$i: $(cat "s-$i.out")"
  grep -q '^resumed at byte [1-9]' "s-$i.out" && resumed=$((resumed + 1))
done
[ "$resumed" -ge 10 ] || fail "only $resumed of 20 devices resumed"
echo "killed mid-download: 20 devices finished, $resumed resumed"

# 3. The database locked by another process: a check-in waits the busy timeout, then gets a
# clean 503; once the lock is gone the same check-in succeeds; the database is sound.
mkfifo lock.in
sqlite3 d/fwdepot.db <lock.in >lock.out 2>&1 &
lock_pid=$!
pids+=("$lock_pid")
exec 7>lock.in
echo 'BEGIN EXCLUSIVE; SELECT "locked";' >&7
seen=$(timeout 10 tail -n +1 -f --pid="$lock_pid" lock.out | grep -m1 '^locked' || true)
[ -n "$seen" ] || fail "could not lock the database: $(cat lock.out)"
checkin() {
  curl -sS --max-time 60 -o checkin.out -w '%{http_code}' --cacert d/pki/ca.pem \
    --cert dev-00.pem --key dev-00.key -H 'Content-Type: application/json' \
    -d '{"model":"m1","version":"1.1.0","state":"idle","result":"success"}' \
    "https://$device/api/v1/device/checkin"
}
code=$(checkin || true)
[ "$code" = 503 ] && grep -q '"busy"' checkin.out || fail "check-in under a lock: $code $(cat checkin.out)"
echo 'COMMIT;' >&7
exec 7>&-
wait "$lock_pid" || true
code=$(checkin || true)
[ "$code" = 200 ] || fail "check-in after the lock: $code $(cat checkin.out)"
storage_sound
echo "database locked: 503 busy, then 200"

# 4. A full disk: blobs on a 48 MiB tmpfs, a 64 MiB upload gets 507 and leaves nothing; a small
# one is stored after it.
if [ "$(id -u)" = 0 ]; then
  mkdir -p small/blobs
  "$fwdepot" init --data small >/dev/null 2>&1
  mount -t tmpfs -o size=48m tmpfs small/blobs
  cleanup_hooks+=("umount '$work/small/blobs'")
  small_token=$("$fwdepot" token create --data small --name faults 2>/dev/null)
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  start_server small server4.log
  "$fwdepot" sign --key small/keys/signing.key --name fw --version 1.1.0 --model m1 \
    --out fw-small.dsse fw.bin >/dev/null
  code=$(curl -sS --max-time 120 -o full.out -w '%{http_code}' --cacert small/pki/ca.pem \
    -H "Authorization: Bearer $small_token" -F manifest=@fw-small.dsse -F image=@fw.bin \
    "https://$admin/api/v1/images" || true)
  [ "$code" = 507 ] || fail "upload to a full disk: $code $(cat full.out)"
  [ -z "$(find small/blobs -type f)" ] || fail "a full disk kept a partial blob"
  head -c $((1024 * 1024)) /dev/urandom >one.bin
  "$fwdepot" sign --key small/keys/signing.key --name one --version 1.0.0 --model m1 \
    --out one.dsse one.bin >/dev/null
  code=$(curl -sS --max-time 60 -o one.out -w '%{http_code}' --cacert small/pki/ca.pem \
    -H "Authorization: Bearer $small_token" -F manifest=@one.dsse -F image=@one.bin \
    "https://$admin/api/v1/images" || true)
  [ "$code" = 201 ] || fail "upload after the full disk: $code $(cat one.out)"
  echo "disk full: 507, nothing kept, then 201"
else
  echo "disk full: not run (mounting a tmpfs needs root)"
fi
echo "faults: ok"
