#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# System calls per connect + 64 B request + close, and per 64 B round trip
# on an open connection, client side and server side, for the raw baselines,
# the hand-written Asio and libuv servers and npipe's servers: strace -c
# counts them over N cycles (after a warm-up the server is not traced for),
# divided by N.
# Usage: bench/syscalls.sh NPIPE_BENCH [N] > table.md   (bench/run.sh runs it)
set -euo pipefail
bench=$1
n=${2:-1000}
work=$(mktemp -d)
server= tracer=
trap '[ -n "$tracer" ] && kill "$tracer" 2>/dev/null; [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
transports=(${NPIPE_SYSCALL_TRANSPORTS:-uds-stream uds-epoll asio-uds libuv-pipe npipe-message npipe-async npipe-async-1t})

# strace -c's table as "name calls" lines.
calls_of() { awk '$1 ~ /^[0-9.]+$/ && NF >= 5 { print $NF, $4 }' "$1"; }

# strace -c's table of FILE as "total<TAB>the five largest", per cycle (of N).
summary() {
  calls_of "$1" | awk -v n="$2" '
    $1 != "total" { c[$1] = $2 }
    END {
      t = 0; for (k in c) t += c[k];
      printf "%.1f\t", t / n;
      m = 0
      while (m < 5) {
        best = ""; for (k in c) if (best == "" || c[k] > c[best]) best = k;
        if (best == "" || c[best] / n < 0.5) break;
        printf "%s%s %.1f", (m ? ", " : ""), best, c[best] / n; delete c[best]; m++
      }
      printf "\n"
    }'
}

# One table row: transport $1 serving, the client making $n cycles of MODE
# (--calls: connect+request+close; --requests: round trips on one connection).
measure() {
  local t=$1 mode=$2 addr="$work/$1"
  rm -f "$addr"
  "$bench" --serve "$t" "$addr" &
  server=$!
  for _ in $(seq 100); do
    [ -S "$addr" ] && "$bench" --calls "$t" "$addr" 1 2>/dev/null && break
    sleep 0.05
  done
  "$bench" "$mode" "$t" "$addr" $((n / 10))
  strace -c -f -p "$server" -o "$work/$t.server" 2>"$work/$t.attach" &
  tracer=$!
  # strace says "Process N attached" (with M threads) once it holds them all.
  for _ in $(seq 200); do
    grep -q attached "$work/$t.attach" && break
    kill -0 "$tracer" 2>/dev/null || break
    sleep 0.05
  done
  if ! kill -0 "$tracer" 2>/dev/null; then
    echo "strace cannot attach to the server: $(cat "$work/$t.attach")" >&2
    echo "(as non-root, kernel.yama.ptrace_scope=1 forbids it: run as root, or set it to 0)" >&2
    exit 1
  fi
  strace -c -f -o "$work/$t.client" "$bench" "$mode" "$t" "$addr" "$n"
  kill -INT "$tracer" || true
  wait "$tracer" 2>/dev/null || true
  kill "$server" || true
  wait "$server" 2>/dev/null || true
  server= tracer=
  IFS=$'\t' read -r ctotal ctop < <(summary "$work/$t.client" "$n")
  IFS=$'\t' read -r stotal stop < <(summary "$work/$t.server" "$n")
  echo "| $t | $ctotal | $stotal | $ctop | $stop |"
}

echo "## System calls per connection"
echo
echo "One connect + 64 B request + close, as the connection-rate row makes them,"
echo "counted with \`strace -c -f\` over $n cycles (\`bench/syscalls.sh\`). Client:"
echo "the whole client process (one thread; its start-up adds about 0.1 per"
echo "connection). Server: every thread of the server process, attached after"
echo "$((n / 10)) warm-up cycles. The largest counts, per connection:"
echo
echo "| transport | client | server | client, largest | server, largest |"
echo "|---|---|---|---|---|"
for t in "${transports[@]}"; do measure "$t" --calls; done
echo
echo "## System calls per round trip"
echo
echo "One 64 B request and its reply on an open connection, as the round-trip"
echo "row makes them, counted the same way over $n round trips:"
echo
echo "| transport | client | server | client, largest | server, largest |"
echo "|---|---|---|---|---|"
for t in "${transports[@]}"; do measure "$t" --requests; done
