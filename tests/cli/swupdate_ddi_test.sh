#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# An update agent no one here wrote, unchanged: Debian's SWUpdate with its hawkBit client
# (suricatta) polls fwdepot's DDI API over mutual TLS with a device certificate from
# `fwdepot certs issue-device`, downloads the .swu artifact, verifies and installs it (a file
# written by SWUpdate's rawfile handler), and reports progress. Started again with "-c 2" (as
# after the reboot that activates an update), it confirms success: the admin API then shows the
# device at the new version with the agent's feedback in its history, and the next poll offers
# nothing. The .swu is signed for SWUpdate with a CMS key of its own, and for fwdepot with the
# release key: each side verifies its own signature.
set -euo pipefail
fwdepot=$1
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
command -v swupdate >/dev/null || fail "swupdate is not installed (scripts/install-deps)"

"$fwdepot" init --data d >/dev/null 2>&1
"$fwdepot" certs issue-device --data d --id dev-swu --model board --out dev >/dev/null
token=$("$fwdepot" token create --data d --name swu 2>/dev/null)

# The .swu: sw-description (signed with CMS), then the payload the rawfile handler installs.
head -c $((200 * 1024 + 3)) /dev/urandom >payload.bin
cat >sw-description <<EOF
software = {
  version = "1.1.0";
  description = "fwdepot DDI interop";
  hardware-compatibility: [ "1.0" ];
  files: (
    {
      filename = "payload.bin";
      path = "$work/installed.bin";
      sha256 = "$(sha256sum payload.bin | cut -d' ' -f1)";
    }
  );
};
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout swu-signer.key \
  -out swu-signer.pem -days 2 -subj "/CN=swu signer" 2>/dev/null
openssl cms -sign -in sw-description -out sw-description.sig -signer swu-signer.pem \
  -inkey swu-signer.key -outform DER -nosmimecap -binary
printf 'sw-description\nsw-description.sig\npayload.bin\n' | cpio --quiet -o -H crc >fw.swu
"$fwdepot" sign --key d/keys/signing.key --name board-os --version 1.1.0 --model board \
  --out fw.dsse fw.swu >/dev/null

start_server d server.log
admin_api() {
  curl -sS --max-time 30 --cacert d/pki/ca.pem -H "Authorization: Bearer $token" "$@"
}
admin_api -F manifest=@fw.dsse -F "image=@fw.swu;filename=board-os-1.1.0.swu" \
  "https://$admin/api/v1/images" | grep -q '"filename":"board-os-1.1.0.swu"' || fail "upload"
admin_api -d '{"image_id":1,"devices":["dev-swu"],"action_type":"forced"}' \
  "https://$admin/api/v1/deployments" | grep -q '"id":1,' || fail "deployment"

cat >swupdate.cfg <<EOF
globals: {
  loglevel = 6;
};
suricatta: {
  tenant = "DEFAULT";
  id = "dev-swu";
  url = "https://$device";
  polldelay = 1;
  retry = 2;
  cafile = "$work/d/pki/ca.pem";
  sslcert = "$work/dev.pem";
  sslkey = "$work/dev.key";
};
EOF

# run_agent LOG LINE [SURICATTA ARGS]: SWUpdate as a daemon until LINE is in its log (at most
# 60 s), then stopped by pid.
run_agent() {
  local log=$1 line=$2 args=${3:-}
  : >"$log"
  swupdate -f swupdate.cfg -H board:1.0 -k swu-signer.pem -v -u "$args" >"$log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local seen
  seen=$(timeout 60 tail -n +1 -f --pid="$pid" "$log" | grep -m1 -F "$line" || true)
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ -n "$seen" ] || fail "SWUpdate never logged '$line'"
}

run_agent install.log 'Update successful, executing post-update actions'
cmp -s installed.bin payload.bin || fail "SWUpdate did not install the payload"
grep -q 'who=dev-swu method=GET route=/{tenant}/controller/v1/{controllerId}/softwaremodules/{moduleId}/artifacts/{fileName} status=200' \
  server.log || fail "the artifact was not downloaded through DDI"
admin_api "https://$admin/api/v1/devices/dev-swu" | grep -q '"version":""' ||
  fail "the version changed before the agent confirmed the update"

# SWUpdate logs the feedback URL once curl has its answer, so the server has committed it.
run_agent confirm.log 'deploymentBase/1/feedback' '-c 2'
python3 - "$(admin_api "https://$admin/api/v1/devices/dev-swu")" \
  "$(admin_api "https://$admin/api/v1/devices/dev-swu/events")" <<'PY' ||
import json, sys
device = json.loads(sys.argv[1])
events = json.loads(sys.argv[2])["events"]
assert device["version"] == "1.1.0" and device["last_result"] == "success", device
assert device["state"] == "idle", device
kinds = [e["kind"] for e in events]
assert kinds[0] == "registered" and kinds.count("feedback") >= 2, kinds
assert any(e["message"].startswith("ddi proceeding") for e in events[1:-1]), events
assert events[-1]["message"].startswith("ddi closed") and events[-1]["image_id"] == 1, events[-1]
PY
  fail "the confirmed update is not in the admin API"
curl -sS --max-time 30 --cacert d/pki/ca.pem --cert dev.pem --key dev.key \
  "https://$device/DEFAULT/controller/v1/dev-swu" >poll.json
grep -q deploymentBase poll.json && fail "the finished action is still offered: $(cat poll.json)"
echo "ok: SWUpdate installed and confirmed 1.1.0 through DDI"
