#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests
# need (Node packages from the committed lockfiles), then the Rust unit and
# end-to-end tests, the Node fixture self-tests and the quickstart smoke
# test. Exits non-zero on any failure.
#
# Needs: cargo, node (20 or later), npm, curl, python3 with pip. Installs
# redis-server and chromium with apt-get when they are missing (as root,
# or with sudo).
# Ports 3000, 8080 and 9090 on 127.0.0.1 must be free for the quickstart
# smoke test; the shared rate-limit tests use a Redis server on
# 127.0.0.1:6390 (started here unless one already replies there), and the
# other tests pick free ports themselves.
set -euo pipefail

cd "$(dirname "$0")/.."
step() { printf '\n== %s\n' "$*"; }

for tool in cargo node npm curl; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found; install it and run again" >&2; exit 1; }
done

step "Installing Node packages (npm ci)"
(cd examples/users-api && npm ci --silent --no-audit --no-fund)
(cd tests/fixtures && npm ci --silent --no-audit --no-fund)

step "Installing the OPA engine bindings (pip) for the external-OPA test"
if [ ! -d target/opa-py/opa_bindings ]; then
  # The wheel declares Python 3.14 but is a ctypes bridge that runs on 3.11.
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target target/opa-py --no-deps --only-binary=:all: --python-version 3.14 \
    --ignore-requires-python opa-golib-python-bindings==0.4.4
fi
export PORTCULLIS_REQUIRE_OPA=1

step "Installing Redis and Chromium when missing (apt-get)"
missing=""
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || missing="redis-server"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
if [ -n "$missing" ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update
  # shellcheck disable=SC2086 # one word per package
  $sudo apt-get install -y --no-install-recommends $missing
fi
# The review report test renders its HTML in headless Chromium.
export PORTCULLIS_REQUIRE_CHROMIUM=1

step "Starting a throwaway Redis server for the shared rate-limit tests"
redis_port=6390
redis_pidfile="$PWD/target/test-redis.pid"
stop_redis() {
  if [ -f "$redis_pidfile" ]; then
    kill "$(cat "$redis_pidfile")" 2>/dev/null || true
    rm -f "$redis_pidfile"
  fi
}
if redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG; then
  echo "using the Redis server that already answers on 127.0.0.1:$redis_port"
else
  mkdir -p target
  trap stop_redis EXIT
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --pidfile "$redis_pidfile" --logfile "$PWD/target/test-redis.log" --dir "$PWD/target"
  for _ in $(seq 50); do
    redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
    sleep 0.2
  done
  redis-cli -h 127.0.0.1 -p "$redis_port" ping | grep -q PONG \
    || { cat target/test-redis.log; echo "error: redis-server did not start on 127.0.0.1:$redis_port" >&2; exit 1; }
fi
export PORTCULLIS_TEST_REDIS="redis://127.0.0.1:$redis_port"

step "Node fixture self-tests"
(cd examples/users-api && npm test --silent)
(cd tests/fixtures && npm test --silent)

step "Rust tests (unit, end-to-end, Wycheproof)"
mkdir -p target
set +e
cargo test --all-targets --no-fail-fast 2>&1 | tee target/cargo-test.log
rust_status=${PIPESTATUS[0]}
set -e
# One closing line for every Rust test binary together.
read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' target/cargo-test.log)
if [ "$rust_status" -ne 0 ]; then
  echo "rust: $passed passed, $failed failed"
  exit "$rust_status"
fi

step "Quickstart smoke test"
./scripts/quickstart.sh --exit > target/quickstart.log 2>&1 || { cat target/quickstart.log; exit 1; }
for expected in "200 OK" "401 Unauthorized" "403 Forbidden" "429 Too Many Requests"; do
  grep -q "$expected" target/quickstart.log || { cat target/quickstart.log; echo "quickstart did not show $expected" >&2; exit 1; }
done
echo "quickstart showed 200, 401, 403 and 429"

step "All tests passed"
echo "rust: $passed passed, $failed failed"
