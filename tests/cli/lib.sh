# SPDX-License-Identifier: Apache-2.0
# Shared by the shell tests; sourced after `fwdepot` is set. Moves into a fresh work directory
# that is removed on exit, after every process recorded in `pids` is stopped (by pid).
work=$(mktemp -d)
pids=()
cleanup_hooks=()  # commands run after the processes are stopped (e.g. unmounting)
cleanup() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true  # a stopped process cannot act on the TERM
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  for hook in "${cleanup_hooks[@]}"; do
    eval "$hook" || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

fail() {
  echo "FAIL: $*" >&2
  for log in *.log; do
    if [ -f "$log" ]; then
      echo "--- $log" >&2
      tail -15 "$log" >&2
    fi
  done
  exit 1
}

# start_server DIR LOG [ARGS...]: `fwdepot serve` on free loopback ports (CoAPS included);
# sets server_pid, admin, device and coaps from its `listening` line, read as it is written
# (bounded, no polling).
start_server() {
  local dir=$1 log=$2
  shift 2
  : >"$log"  # exists before tail looks at it
  "$fwdepot" serve --data "$dir" --device-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --coaps-listen 127.0.0.1:0 --threads 2 "$@" >"$log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  local line
  # tail ends on SIGPIPE once grep has its line: only grep's verdict counts.
  line=$(timeout 30 tail -n +1 -f --pid="$server_pid" "$log" | grep -m1 ' listening ' || true)
  [ -n "$line" ] || fail "the server did not start: $(cat "$log")"
  admin=$(sed -n 's/.* admin=\([^ ]*\) .*/\1/p' <<<"$line")
  device=$(sed -n 's/.* device=\([^ ]*\) .*/\1/p' <<<"$line")
  coaps=$(sed -n 's/.* coaps=\([^ ]*\) .*/\1/p' <<<"$line")
}
