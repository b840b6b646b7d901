#!/usr/bin/env bash
# The main job on an embedded default: a throwaway OpenSSH server on loopback (generated keys),
# a small HTTP service behind it, the ecto-tunnel daemon forwarding a local port through SSH to
# that service, and one request going through the tunnel. Everything lives in a temp dir and is
# removed at the end (the daemon's control socket too; /run/sshd, which a root sshd needs, is removed
# again when the script created it); nothing on the system is reconfigured.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Building ecto-tunnel"
swift build 2>&1 | tail -n 1
BIN="$(swift build --show-bin-path)/ecto-tunnel"

WORK="$(mktemp -d /tmp/ecto-demo.XXXXXX)"
PIDS=()
MADE_RUN_SSHD=
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
    # sshd (as root) needs /run/sshd; remove it again if this script made it.
    if [ -n "$MADE_RUN_SSHD" ]; then rmdir /run/sshd 2>/dev/null || true; fi
}
trap cleanup EXIT

# A free TCP port on 127.0.0.1 below 32768 (above it, other programs' outgoing connections take ports).
free_port() {
    python3 - <<'PY'
import random, socket
for _ in range(200):
    port = random.randint(20000, 31999)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        s.close()
PY
}
wait_port() {  # wait_port PORT SECONDS
    python3 - "$1" "$2" <<'PY'
import socket, sys, time
port, limit = int(sys.argv[1]), time.time() + float(sys.argv[2])
while time.time() < limit:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close(); sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
}

step "Starting a throwaway sshd on 127.0.0.1 (keys generated in $WORK)"
if [ "$(id -u)" -eq 0 ] && [ ! -d /run/sshd ]; then
    install -d -m 755 /run/sshd && MADE_RUN_SSHD=1
fi
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key" -C demo-host
ssh-keygen -q -t ed25519 -N '' -f "$WORK/id_ed25519" -C demo-client
cp "$WORK/id_ed25519.pub" "$WORK/authorized_keys"
SSH_PORT="$(free_port)"
cat > "$WORK/sshd_config" <<CONF
HostKey $WORK/host_key
AuthorizedKeysFile $WORK/authorized_keys
PidFile none
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowTcpForwarding yes
LogLevel VERBOSE
CONF
/usr/sbin/sshd -f "$WORK/sshd_config" -D -e -o ListenAddress=127.0.0.1 -p "$SSH_PORT" 2>"$WORK/sshd.log" &
PIDS+=($!)
wait_port "$SSH_PORT" 5 || { cat "$WORK/sshd.log"; exit 1; }
echo "sshd listening on 127.0.0.1:$SSH_PORT"

step "Starting the service behind it (the 'gateway': HTTP on the server's loopback)"
mkdir -p "$WORK/www/v1"
echo "hello from the gateway behind SSH" > "$WORK/www/index.html"
echo '{"ok": true, "service": "demo gateway"}' > "$WORK/www/v1/health"
SERVICE_PORT="$(free_port)"
python3 -m http.server --bind 127.0.0.1 --directory "$WORK/www" "$SERVICE_PORT" >"$WORK/service.log" 2>&1 &
PIDS+=($!)
wait_port "$SERVICE_PORT" 5
echo "service listening on 127.0.0.1:$SERVICE_PORT"

step "Writing the tunnel config (strict host key checking against a known_hosts we trust)"
echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$WORK/host_key.pub")" > "$WORK/known_hosts"
LOCAL_PORT="$(free_port)"
cat > "$WORK/config.toml" <<CONF
# ecto-tunnel demo config
[tunnels.demo]
target = "$(id -un)@127.0.0.1:$SSH_PORT"
local = "127.0.0.1:$LOCAL_PORT"
remote = "127.0.0.1:$SERVICE_PORT"
identity_file = "$WORK/id_ed25519"
known_hosts = "$WORK/known_hosts"
keepalive_interval = 15
CONF
cat "$WORK/config.toml"
"$BIN" check --config "$WORK/config.toml"

step "Running the daemon: ecto-tunnel run --config $WORK/config.toml --socket $WORK/control.sock"
# Its control socket in the temp dir too (the default, $XDG_RUNTIME_DIR/ecto-tunnel/, would outlive the demo).
env -u SSH_AUTH_SOCK "$BIN" run --config "$WORK/config.toml" --socket "$WORK/control.sock" 2>"$WORK/daemon.log" &
DAEMON=$!
PIDS+=($DAEMON)
for _ in $(seq 100); do grep -q '"connected\|connected' "$WORK/daemon.log" 2>/dev/null && break; sleep 0.05; done

step "A request through the tunnel: curl http://127.0.0.1:$LOCAL_PORT/"
curl -sS --max-time 5 "http://127.0.0.1:$LOCAL_PORT/"
curl -sS --max-time 5 "http://127.0.0.1:$LOCAL_PORT/v1/health"

step "Stopping the daemon (SIGTERM)"
kill -TERM "$DAEMON"
wait "$DAEMON" || true
echo "daemon log:"
sed 's/^/  /' "$WORK/daemon.log"
echo
echo "sshd saw the forwarding:"
grep -E "Accepted publickey|direct-tcpip|Disconnected|Received disconnect" "$WORK/sshd.log" | sed 's/^/  /' | head -n 8
