#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Configuration, checked against its documentation: every key in docs/configuration.md's table
# is what `fwdepot serve --check-config` prints, and each is accepted from the file, from its
# FWDEPOT_* variable and from its documented flag, with flag > environment > file > default.
# Misspelt keys in each of the three places, and bad values, fail with a message naming them.
set -euo pipefail
fwdepot=$1
doc=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
cd "$work"
"$fwdepot" init --data data >/dev/null 2>&1
# Nothing from the caller's environment may leak into the checks.
while IFS='=' read -r name _; do
  case "$name" in FWDEPOT_*) unset "$name" ;; esac
done < <(env)

check() { "$fwdepot" serve --data data --check-config "$@"; }
# `check_fails PATTERN CMD...`: CMD exits non-zero and its one-line error matches PATTERN.
check_fails() {
  local pattern=$1 out status=0
  shift
  out=$("$@" 2>&1 >/dev/null) || status=$?
  [ "$status" -ne 0 ] || fail "accepted: $*"
  grep -q -- "$pattern" <<<"$out" || fail "error for '$*' does not name '$pattern': $out"
}

# The documented keys and flags: the table's first two columns.
declare -A flag_of=()
while IFS='|' read -r _ keys flags _; do
  mapfile -t k < <(grep -o '`[a-z_.]*`' <<<"$keys" | tr -d '`')
  mapfile -t f < <(grep -o '`--[a-z-]*`' <<<"$flags" | tr -d '`')
  [ "${#k[@]}" -eq "${#f[@]}" ] || fail "docs: keys and flags do not pair up: $keys | $flags"
  for i in "${!k[@]}"; do flag_of[${k[$i]}]=${f[$i]}; done
done < <(grep '^| `[a-z]' "$doc")
[ "${#flag_of[@]}" -ge 20 ] || fail "docs: found only ${#flag_of[@]} keys"

effective=$(check) || fail "the default configuration is refused"
declare -A value_of=()
while IFS= read -r line; do
  key=${line%% = *}
  rest=${line#* = }
  value_of[$key]=${rest%%  # *}
  [ "${rest##*  # }" = file ] || fail "$key: source is not the file: $line"
done <<<"$effective"
documented=$(printf '%s\n' "${!flag_of[@]}" | sort)
printed=$(printf '%s\n' "${!value_of[@]}" | sort)
[ "$documented" = "$printed" ] ||
  fail "documented and effective keys differ: $(diff <(echo "$documented") <(echo "$printed"))"

# Each key through its variable and through its flag, with the value --check-config printed.
for key in "${!flag_of[@]}"; do
  value=${value_of[$key]}
  env_name=FWDEPOT_$(tr 'a-z.' 'A-Z_' <<<"$key")
  items=()
  if [[ $value == \[* ]]; then  # a list of quoted strings
    mapfile -t items < <(grep -o '"[^"]*"' <<<"$value" | tr -d '"')
    env_value=$(IFS=,; echo "${items[*]}")
  else
    items=("$(sed 's/^"\(.*\)"$/\1/' <<<"$value")")
    env_value=${items[0]}
  fi
  got=$(env "$env_name=$env_value" "$fwdepot" serve --data data --check-config) ||
    fail "$env_name=$env_value refused"
  grep -qxF "$key = $value  # env $env_name" <<<"$got" || fail "$env_name not applied"
  args=()
  for item in "${items[@]}"; do args+=("${flag_of[$key]}" "$item"); done
  got=$(check "${args[@]}") || fail "${args[*]} refused"
  grep -qxF "$key = $value  # flag ${flag_of[$key]}" <<<"$got" || fail "${flag_of[$key]} not applied"
done

# Precedence: flag over variable over file.
sed -i 's/^threads = 0 /threads = 3 /' data/fwdepot.toml
check | grep -qxF 'server.threads = 3  # file' || fail "file value not used"
FWDEPOT_SERVER_THREADS=5 check | grep -qxF 'server.threads = 5  # env FWDEPOT_SERVER_THREADS' ||
  fail "the variable does not win over the file"
FWDEPOT_SERVER_THREADS=5 check --threads 7 | grep -qxF 'server.threads = 7  # flag --threads' ||
  fail "the flag does not win over the variable"
# A relative path in a variable is relative to the working directory, in the file to DIR.
FWDEPOT_STORAGE_DATABASE=other.db check | grep -qxF "storage.database = \"$work/other.db\"  # env FWDEPOT_STORAGE_DATABASE" ||
  fail "relative path in a variable"

# Misspelt keys, wherever they are, and bad values: refused, naming the culprit.
cp data/fwdepot.toml good.toml
sed -i 's/^max_image_bytes = /max_image_byte = /' data/fwdepot.toml
check_fails "unknown key 'limits.max_image_byte'" check
cp good.toml data/fwdepot.toml
sed -i 's/^\[limits\]/[limit]/' data/fwdepot.toml
check_fails "unknown key 'limit\." check
cp good.toml data/fwdepot.toml
check_fails "FWDEPOT_LIMITS_MAX_IMAGE_BYTE" env FWDEPOT_LIMITS_MAX_IMAGE_BYTE=5 "$fwdepot" serve \
  --data data --check-config
check_fails "--max-image-byte" check --max-image-byte 5
check_fails "server.threads (env FWDEPOT_SERVER_THREADS): must be an integer from 0 to 256, not 'many'" \
  env FWDEPOT_SERVER_THREADS=many "$fwdepot" serve --data data --check-config
check_fails "limits.max_connections (flag --max-connections): must be an integer" \
  check --max-connections 0
sed -i 's/^threads = 3 /threads = "3" /' data/fwdepot.toml
check_fails "'server.threads' must be an integer" check
cp good.toml data/fwdepot.toml
check_fails "server.log_level" check --log-level loud
check_fails "signing.threshold" check --threshold 2
check_fails "listen address 'nowhere'" check --admin-listen nowhere
check_fails "listen address 'udp:x'" check --coaps-listen udp:x
check --coaps-listen "" | grep -qxF 'server.coaps_listen = ""  # flag --coaps-listen' ||
  fail "an empty CoAPS address does not turn CoAPS off"
check_fails "missing.pem" check --tls-cert missing.pem
echo "not a crl" >garbage.pem
check_fails "garbage.pem\|CRL\|crl" check --tls-crl garbage.pem
# A refused configuration starts nothing: serve without --check-config exits the same way.
check_fails "unknown variable FWDEPOT_TLS_CERTIFICATE" env FWDEPOT_TLS_CERTIFICATE=x "$fwdepot" serve --data data
# JSON logs, on stdout, from a running server: every line one object.
FWDEPOT_SERVER_LOG_FORMAT=json "$fwdepot" serve --data data --device-listen 127.0.0.1:0 \
  --admin-listen 127.0.0.1:0 --coaps-listen 127.0.0.1:0 --threads 1 >serve.out 2>serve.err &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
line=$(timeout 30 tail -n +1 -f --pid="$server" serve.out | grep -m1 '"event":"listening"' || true)
[ -n "$line" ] || fail "no JSON listening line: $(cat serve.out serve.err)"
admin=$(sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' <<<"$line")
curl -sS --max-time 10 --cacert data/pki/ca.pem "https://$admin/healthz" >/dev/null
kill -TERM "$server"
wait "$server" || fail "serve did not stop cleanly"
python3 - serve.out <<'PY' || fail "JSON log lines: $(cat serve.out)"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
objs = [json.loads(l) for l in lines]
assert all(list(o)[:3] == ["ts", "level", "event"] for o in objs), objs
req = [o for o in objs if o["event"] == "request"]
assert req and req[0]["route"] == "/healthz" and req[0]["status"] == "200", req
assert objs[-1]["event"] == "stopped", objs[-1]
PY
[ ! -s serve.err ] || fail "serve wrote to stderr: $(cat serve.err)"

echo "config: ${#flag_of[@]} documented keys accepted from file, environment and flags"
