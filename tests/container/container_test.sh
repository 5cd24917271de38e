#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The container image end to end, with rootful podman (no Docker engine here): base images made
# from Debian's packages, docker/Dockerfile built unchanged, the container started with host
# networking and a fresh volume. From the host, curl uploads and deploys an image and the
# host-built fwdepot-device updates against the container; after a restart the volume's data is
# all there and nothing was initialized twice.
set -euo pipefail
source_dir=$1
build_dir=$2
export CONTAINERS_CONF=$source_dir/docker/podman/containers.conf
name=fwdepot-test-$$
volume=fwdepot-test-$$
readonly containers=("$name" "$name-2") volumes=("$volume" "$volume-2")
work=$(mktemp -d)
cleanup() {
  podman rm --force --time 10 "${containers[@]}" >/dev/null 2>&1 || true
  podman volume rm --force "${volumes[@]}" >/dev/null 2>&1 || true
  # This build's own leftover: the 900 MB build stage (labelled in the Dockerfile).
  podman image prune --force --filter label=org.fwdepot.stage=build >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  podman logs "$name" 2>&1 | tail -20 >&2 || true
  exit 1
}
[ "$(id -u)" = 0 ] || fail "rootful podman is needed (run as root)"

bash "$source_dir/docker/podman/base-images" || fail "base images"
build_start=$(date +%s)
podman build --quiet --format docker --network host -f "$source_dir/docker/Dockerfile" \
  -t localhost/fwdepot:test "$source_dir" >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log" >&2; fail "image build"; }
size=$(podman image inspect localhost/fwdepot:test --format '{{.Size}}')
echo "image built in $(($(date +%s) - build_start)) s, $((size / 1000000)) MB"
[ "$(podman image inspect localhost/fwdepot:test --format '{{.Config.User}}')" = fwdepot ] ||
  fail "the image does not run as the fwdepot user"
# (Outputs are captured before grep -q reads them: with pipefail, a writer cut off by grep's
# early exit would turn a match into a failure.)
healthcheck=$(podman image inspect localhost/fwdepot:test --format '{{.Config.Healthcheck}}')
grep -q healthcheck <<<"$healthcheck" ||
  fail "no HEALTHCHECK in the image"

# A first admin token from a secret file, as compose passes one.
token="container-test-$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')"
printf '%s\n' "$token" >"$work/token"
chmod 644 "$work/token"
# Fixed free ports on loopback (the health check needs to know the admin port).
read -r device_port admin_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
podman volume create "$volume" >/dev/null
# Health checks run on demand below (`podman healthcheck run`): no systemd timer here.
podman run -d --name "$name" --network host -v "$volume:/var/lib/fwdepot" \
  -v "$work/token:/run/secrets/admin_token:ro" --health-interval disable \
  -e FWDEPOT_ADMIN_TOKEN_FILE=/run/secrets/admin_token \
  -e FWDEPOT_SERVER_DEVICE_LISTEN=127.0.0.1:$device_port \
  -e FWDEPOT_SERVER_ADMIN_LISTEN=127.0.0.1:$admin_port \
  -e FWDEPOT_SERVER_COAPS_LISTEN=127.0.0.1:0 \
  localhost/fwdepot:test --threads 2 >/dev/null || fail "podman run"

# wait_listening N: the Nth `listening` line of the container's log (one per start); sets
# admin and device. Read as the log grows, bounded.
wait_listening() {
  local line="" seen=0
  coproc logs { exec timeout 60 podman logs -f "$name" 2>&1; }
  while IFS= read -r l <&"${logs[0]}"; do
    if [[ $l == *" listening "* ]] && [ $((seen += 1)) -eq "$1" ]; then
      line=$l
      break
    fi
  done
  kill "$logs_PID" 2>/dev/null || true
  wait "$logs_PID" 2>/dev/null || true
  [ -n "$line" ] || fail "the server did not start"
  admin=$(sed -n 's/.* admin=\([^ ]*\) .*/\1/p' <<<"$line")
  device=$(sed -n 's/.* device=\([^ ]*\) .*/\1/p' <<<"$line")
}
wait_listening 1
logs=$(podman logs "$name" 2>&1)
if grep -q -- "$token" <<<"$logs"; then
  fail "the admin token appears in the logs"
fi
podman healthcheck run "$name" || fail "the image's HEALTHCHECK fails on a healthy server"

# Credentials from the volume: the CA, a device certificate, the release key.
podman exec "$name" fwdepot certs issue-device --data /var/lib/fwdepot --id box-1 \
  --model box --out /var/lib/fwdepot/box-1 >/dev/null
for f in pki/ca.pem box-1.pem box-1.key keys/signing.key keys/signing.pub; do
  podman cp "$name:/var/lib/fwdepot/$f" "$work/$(basename "$f")"
done
head -c $((2 * 1024 * 1024)) /dev/urandom >"$work/fw.bin"
"$build_dir/cli/fwdepot" sign --key "$work/signing.key" --name box-fw --version 1.1.0 \
  --model box --out "$work/fw.dsse" "$work/fw.bin" >/dev/null
ca=(--cacert "$work/ca.pem")
auth=(-H "Authorization: Bearer $token")
curl -sS --max-time 60 "${ca[@]}" "${auth[@]}" -F manifest=@"$work/fw.dsse" \
  -F image=@"$work/fw.bin" "https://$admin/api/v1/images" | grep -q '"id":1,' || fail "upload"
curl -sS --max-time 30 "${ca[@]}" "${auth[@]}" -H 'Content-Type: application/json' \
  -d '{"image_id":1,"models":["box"]}' "https://$admin/api/v1/deployments" |
  grep -q '"active":true' || fail "deployment"

agent=("$build_dir/cli/fwdepot-device" --server "https://$device" --cert "$work/box-1.pem"
  --key "$work/box-1.key" --cacert "$work/ca.pem" --trusted-key "$work/signing.pub"
  --model box --state-dir "$work/agent" --initial-version 1.0.0 --once)
timeout 120 "${agent[@]}" >"$work/agent.log" 2>&1 || fail "agent: $(cat "$work/agent.log")"
grep -q "updated to 1.1.0" "$work/agent.log" || fail "agent: $(cat "$work/agent.log")"
cmp -s "$work/agent/firmware.bin" "$work/fw.bin" || fail "the device holds other bytes"

# Restart: same volume, nothing initialized again, everything still there.
podman restart --time 10 "$name" >/dev/null || fail "restart"
wait_listening 2
[ "$(podman logs "$name" 2>&1 | grep -c 'created from /run/secrets/admin_token')" = 1 ] ||
  fail "the token was created twice"
curl -sS --max-time 30 "${ca[@]}" "${auth[@]}" "https://$admin/api/v1/images" |
  grep -q '"name":"box-fw"' || fail "the image is gone after a restart"
curl -sS --max-time 30 "${ca[@]}" "${auth[@]}" "https://$admin/api/v1/devices/box-1" |
  grep -q '"version":"1.1.0"' || fail "the device's state is gone after a restart"
timeout 120 "${agent[@]}" >"$work/agent2.log" 2>&1 || fail "agent: $(cat "$work/agent2.log")"
grep -q "no update, running 1.1.0" "$work/agent2.log" || fail "agent: $(cat "$work/agent2.log")"
# SIGTERM reaches the server (it is PID 1 through exec) and it stops cleanly.
podman stop --time 20 "$name" >/dev/null
[ "$(podman inspect "$name" --format '{{.State.ExitCode}}')" = 0 ] || fail "unclean stop"
logs=$(podman logs "$name" 2>&1)
grep -q ' stopped' <<<"$logs" || fail "no clean shutdown in the log"

# Without a token file, the first start prints a new token once; it works, and a restart
# neither prints nor creates another.
name=$name-2
volume=$volume-2
# The admin address as a flag this time: the health check must follow it.
podman run -d --name "$name" --network host -v "$volume:/var/lib/fwdepot" \
  --health-interval disable -e FWDEPOT_SERVER_DEVICE_LISTEN=127.0.0.1:$device_port \
  -e FWDEPOT_SERVER_COAPS_LISTEN=127.0.0.1:0 localhost/fwdepot:test --admin-listen "127.0.0.1:$admin_port" >/dev/null ||
  fail "podman run without a token file"
wait_listening 1
podman healthcheck run "$name" || fail "the HEALTHCHECK does not follow --admin-listen"
printed=$(podman logs "$name" 2>&1 | sed -n 's/^fwdepot: initial admin token (shown once, store it now): //p')
[ -n "$printed" ] || fail "no initial token printed"
curl -sS --max-time 30 --cacert <(podman exec "$name" cat /var/lib/fwdepot/pki/ca.pem) \
  -H "Authorization: Bearer $printed" "https://$admin/api/v1/images" | grep -q '"images":\[\]' ||
  fail "the printed token does not work"
podman restart --time 10 "$name" >/dev/null || fail "restart"
wait_listening 2
[ "$(podman logs "$name" 2>&1 | grep -c 'initial admin token')" = 1 ] || fail "a second token"
echo "container: ok"
