#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `fwdepot backup` while the server runs, during an upload and device check-ins; `fwdepot
# restore` into a fresh directory; a server on the restored directory has the same images and
# devices, serves the same bytes and accepts the same token. A damaged backup is refused and
# restores nothing.
set -euo pipefail
fwdepot=$1
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

"$fwdepot" init --data data >/dev/null 2>&1
"$fwdepot" certs issue-device --data data --id dev-1 --model m1 --out dev-1 >/dev/null
token=$("$fwdepot" token create --data data --name backup-test 2>/dev/null)
head -c $((1024 * 1024)) /dev/urandom >small.bin
head -c $((24 * 1024 * 1024)) /dev/urandom >big.bin
"$fwdepot" sign --key data/keys/signing.key --name fw --version 1.1.0 --model m1 \
  --out small.dsse small.bin >/dev/null
"$fwdepot" sign --key data/keys/signing.key --name fw --version 2.0.0 --model m1 \
  --out big.dsse big.bin >/dev/null

start_server data server.log
ca=(--cacert data/pki/ca.pem)
auth=(-H "Authorization: Bearer $token")
dev=(--cert dev-1.pem --key dev-1.key)
curl -sS --max-time 30 "${ca[@]}" "${auth[@]}" -F manifest=@small.dsse -F image=@small.bin \
  "https://$admin/api/v1/images" | grep -q '"id":1,' || fail "upload of the small image"
curl -sS --max-time 30 "${ca[@]}" "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"image_id":1,"models":["m1"]}' "https://$admin/api/v1/deployments" >/dev/null

curl -sS --max-time 30 "${ca[@]}" "${dev[@]}" -H 'Content-Type: application/json' \
  -d '{"model":"m1","version":"1.0.0","state":"idle"}' "https://$device/api/v1/device/checkin" |
  grep -q '"image_id":1' || fail "first check-in"

# While an upload streams (rate-limited to 4 MiB/s: 6 s for 24 MiB) and the device keeps
# checking in, take the backup.
curl -sS --max-time 120 --limit-rate 4M "${ca[@]}" "${auth[@]}" -F manifest=@big.dsse \
  -F image=@big.bin "https://$admin/api/v1/images" >big-upload.out 2>&1 &
upload=$!
pids+=("$upload")
(
  i=0
  while kill -0 "$upload" 2>/dev/null; do
    i=$((i + 1))
    curl -sS --max-time 10 "${ca[@]}" "${dev[@]}" -H 'Content-Type: application/json' \
      -d "{\"model\":\"m1\",\"version\":\"1.0.$i\",\"state\":\"idle\"}" \
      "https://$device/api/v1/device/checkin" >/dev/null || exit 1
  done
) &
checkins=$!
pids+=("$checkins")
# The upload is under way once the server holds its temporary file (a bounded wait for that
# condition; the backup must start while it streams).
for _ in $(seq 200); do
  [ -n "$(ls data/blobs/tmp)" ] && break
  sleep 0.05
done
[ -n "$(ls data/blobs/tmp)" ] || fail "the big upload did not start"
"$fwdepot" backup --data data --out backup/ >backup.log 2>&1 || fail "backup: $(cat backup.log)"
wait "$upload" || fail "the big upload failed: $(cat big-upload.out)"
wait "$checkins" || fail "check-ins failed during the backup"
grep -q '"id":2,' big-upload.out || fail "big upload: $(cat big-upload.out)"
[ ! -e backup.partial ] || fail "backup.partial left behind"
[ "$(stat -c %a backup)" = 700 ] || fail "the backup directory is not private"

# The backup is one consistent snapshot: every image it lists has its verified payload.
sqlite3 -readonly backup/fwdepot.db 'PRAGMA integrity_check' | grep -qx ok || fail "integrity"
images=$(sqlite3 -readonly backup/fwdepot.db 'SELECT id, sha256 FROM images ORDER BY id')
[ "$(cut -d'|' -f1 <<<"$images")" = 1 ] || fail "the backup must hold image 1 only: $images"
[ -z "$(ls backup/blobs)" ] || [ ! -e backup/blobs/tmp ] || fail "an upload in flight was copied"
while IFS='|' read -r id sha; do
  [ "$(sha256sum "backup/blobs/sha256/${sha:0:2}/$sha" | cut -d' ' -f1)" = "$sha" ] ||
    fail "image $id: payload in the backup does not match"
done <<<"$images"
checkins_in_backup=$(sqlite3 -readonly backup/fwdepot.db \
  "SELECT count(*) FROM device_events WHERE device_id = 'dev-1'")
echo "backup holds $(wc -l <<<"$images") image(s) and $checkins_in_backup check-in(s) of dev-1"

# Negative: a damaged backup restores nothing.
cp -a backup damaged
sha1=$(sqlite3 -readonly damaged/fwdepot.db 'SELECT sha256 FROM images WHERE id = 1')
blob="damaged/blobs/sha256/${sha1:0:2}/$sha1"
chmod u+w "$blob"
rm "$blob"  # it may be a hard link into the data directory: never write through it
head -c $((1024 * 1024)) /dev/zero >"$blob"
if "$fwdepot" restore --from damaged --data bad-restore >restore-bad.log 2>&1; then
  fail "a damaged backup was restored"
fi
grep -q "image 1 .*does not match its SHA-256" restore-bad.log || fail "$(cat restore-bad.log)"
[ ! -e bad-restore ] && [ ! -e bad-restore.restoring ] || fail "a refused restore left files"
# A backup never creates the catalog it was asked to copy.
FWDEPOT_STORAGE_DATABASE=nowhere.db "$fwdepot" backup --data data --out never >never.log 2>&1 &&
  fail "backed up a database that does not exist"
grep -q "nowhere.db does not exist" never.log || fail "$(cat never.log)"
[ ! -e nowhere.db ] && [ ! -e never ] && [ ! -e never.partial ] || fail "files left behind"
mkdir occupied && touch occupied/x
"$fwdepot" restore --from backup --data occupied >occupied.log 2>&1 && fail "restored over files"
grep -q "not empty" occupied.log || fail "$(cat occupied.log)"

# Restore into a fresh directory and serve it.
kill -TERM "$server_pid"
wait "$server_pid" || true
"$fwdepot" restore --from backup --data restored >restore.log 2>&1 || fail "$(cat restore.log)"
grep -q "integrity_check ok" restore.log || fail "$(cat restore.log)"
sqlite3 -readonly restored/fwdepot.db 'PRAGMA integrity_check' | grep -qx ok || fail "integrity"
start_server restored restored.log
listed=$(curl -sS --max-time 30 "${ca[@]}" "${auth[@]}" "https://$admin/api/v1/images")
for id in $(cut -d'|' -f1 <<<"$images"); do
  grep -q "\"id\":$id," <<<"$listed" || fail "image $id not served after restore: $listed"
done
devices=$(curl -sS --max-time 30 "${ca[@]}" "${auth[@]}" "https://$admin/api/v1/devices")
grep -q '"id":"dev-1"' <<<"$devices" || fail "device missing after restore: $devices"
events=$(curl -sS --max-time 30 "${ca[@]}" "${auth[@]}" \
  "https://$admin/api/v1/devices/dev-1/events?limit=1000")
[ "$(grep -o '"kind":"checkin"' <<<"$events" | wc -l)" = "$checkins_in_backup" ] ||
  fail "history differs after restore"
# The device, with its old certificate, still gets image 1 and the same bytes.
offered=$(curl -sS --max-time 30 "${ca[@]}" "${dev[@]}" -H 'Content-Type: application/json' \
  -d '{"model":"m1","version":"1.0.0","state":"idle"}' "https://$device/api/v1/device/checkin" |
  sed -n 's/.*"image_id":\([0-9]*\).*/\1/p')
curl -sS --max-time 60 "${ca[@]}" "${dev[@]}" -o got.bin \
  "https://$device/api/v1/device/images/$offered"
[ "$offered" = 1 ] || fail "offered image $offered after restore"
cmp -s got.bin small.bin || fail "downloaded bytes differ after restore"
echo "backup and restore: ok"
