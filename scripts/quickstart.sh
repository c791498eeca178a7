#!/usr/bin/env bash
# Starts the users API example and Portcullis on its embedded defaults in
# front of it, then shows four requests: allowed (200), no token (401),
# missing scope (403) and rate limited (429). Keeps both running until
# Ctrl-C; with --exit it stops them after the demonstration.
#
# Needs: cargo, node (20 or later) and npm. Ports: 3000 (API), 8080
# (gateway), 9090 (gateway admin), all on 127.0.0.1.
set -euo pipefail

cd "$(dirname "$0")/.."
exit_after_demo=0
[ "${1:-}" = "--exit" ] && exit_after_demo=1

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

for tool in cargo node npm curl; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found; install it and run again" >&2; exit 1; }
done
for port in 3000 8080 9090; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "error: port $port on 127.0.0.1 is already in use; stop what listens there and run again" >&2
    exit 1
  fi
done

step "Building portcullis (release)"
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/portcullis"

step "Installing the users API example"
(cd examples/users-api && npm ci --silent --no-audit --no-fund)

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

wait_for() {
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "error: $1 did not respond within 10 seconds" >&2
  exit 1
}

step "Starting the users API on 127.0.0.1:3000 (no authentication, no rate limit)"
(cd examples/users-api && exec node server.js) &
pids+=($!)
wait_for http://127.0.0.1:3000/users

step "Starting Portcullis on 127.0.0.1:8080 with its embedded default configuration"
"$bin" serve --log warn &
pids+=($!)
wait_for http://127.0.0.1:9090/healthz

mint() {
  "$bin" token mint --key examples/users-api/demo-keys/demo-es256.pem --kid demo-es256 \
    --issuer https://demo.portcullis.test --audience users-api --subject "$1" --scope "$2"
}
reader=$(mint alice read:users)
no_scope=$(mint bob "")

show() {
  local title=$1; shift
  printf '\n-- %s\n$ curl' "$title"
  printf ' %q' "$@" | sed -E 's/Bearer\\ [A-Za-z0-9._-]+/Bearer\\ $TOKEN/'
  echo
  curl -s -i "$@" | sed -n '1p;/^[Rr]ate[Ll]imit\|^[Rr]etry-[Aa]fter\|^www-authenticate/p;$p'
  echo
}

step "Four requests through the gateway"
show "allowed: a token with read:users" -H "Authorization: Bearer $reader" http://127.0.0.1:8080/users
show "rejected: no token (401)" http://127.0.0.1:8080/users
show "rejected: a token without read:users (403)" -H "Authorization: Bearer $no_scope" http://127.0.0.1:8080/users
for _ in 1 2 3 4; do curl -s -o /dev/null -H "Authorization: Bearer $reader" http://127.0.0.1:8080/users/1; done
show "rate limited: the sixth request in 10 seconds for one subject (429)" -H "Authorization: Bearer $reader" http://127.0.0.1:8080/users/1

cat <<TEXT

Mint your own token (valid for 1 hour):
  $bin token mint --key examples/users-api/demo-keys/demo-es256.pem --kid demo-es256 \\
    --issuer https://demo.portcullis.test --audience users-api --subject alice --scope read:users
Health and metrics: http://127.0.0.1:9090/healthz  /readyz  /metrics
TEXT

if [ "$exit_after_demo" -eq 1 ]; then
  exit 0
fi
echo "The API and the gateway keep running; press Ctrl-C to stop both."
wait
