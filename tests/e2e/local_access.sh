#!/usr/bin/env bash
# Local access to a daemon, with real processes as other users: the control
# socket is 0600 even under umask 000 and every client's credentials are
# checked (other users refused with a clear error, the daemon stays up);
# with --control-group its members get in and nobody else; extra QEMU
# arguments outside the allowlist are refused by name (a -netdev helper=
# never runs), also when a peer brings them in a migration; the state
# directory's files are 0600 and its folders 0700 (an older 0755 one is
# tightened).
set -euo pipefail
BNF=${1:?usage: local_access.sh BNF GUEST_ELF}
GUEST=${2:?}
if [ "$(id -u)" -ne 0 ]; then echo "skip: needs root (runs clients as other users)"; exit 77; fi
if ! setpriv --reuid=65534 --regid=65534 --clear-groups "$BNF" --help >/dev/null 2>&1; then
  echo "skip: user nobody cannot run $BNF (a folder on its path is closed to others)"; exit 77
fi
WORK=$(mktemp -d /dev/shm/bnf-access-XXXXXX)
chmod 755 "$WORK"  # other users reach the sockets this test puts in it
GROUP=bnfctl$$
MEMBER=bnfctlm$$
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  userdel "$MEMBER" 2>/dev/null || true
  groupdel "$GROUP" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
source "$(dirname "$0")/guest_lib.sh"
cd "$WORK"

start_daemon() {  # start_daemon NAME [DAEMON ARGS] -> URI_NAME; under umask 000, as a careless init might
  local name=$1; shift
  (umask 000; exec "$BNF" daemon --state-dir "$WORK/$name" --listen bnf+tcp:127.0.0.1:0 \
    --peer-key "$WORK/peer.key" "$@" 2>"$WORK/$name.log") &
  PIDS+=($!)
  for _ in $(seq 100); do
    if grep -q "control socket" "$WORK/$name.log" 2>/dev/null; then
      eval "URI_$name=$(sed -n 's/.*listening on \(bnf+tcp:[^ ]*\).*/\1/p' "$WORK/$name.log")"
      return 0
    fi
    sleep 0.05
  done
  echo "daemon $name did not start"; cat "$WORK/$name.log"; exit 1
}
ctl() { local sock=$1; shift; BNF_CONTROL=$sock "$@"; }  # ctl SOCK COMMAND...: a client of that socket
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
mode_of() { stat -c %a "$1"; }
fails_with() {  # fails_with TEXT COMMAND...: non-zero exit, TEXT on stderr
  local text=$1; shift
  if "$@" >/dev/null 2>"$WORK/err.txt"; then return 1; fi
  grep -qF -- "$text" "$WORK/err.txt" || { echo "  said: $(cat "$WORK/err.txt")"; return 1; }
}
# Nothing under $1 (but symlinks) that the group or others may use.
private_tree() { [ -z "$(find "$1" -mindepth 1 ! -type l -perm /077 -print -quit)" ]; }

# --- the control socket: who may use it
mkdir -p "$WORK/A/snapshots" "$WORK/ctl"
chmod 755 "$WORK/A" "$WORK/A/snapshots" "$WORK/ctl"  # as an older bnf left them
SOCK_A=$WORK/ctl/control.sock  # in a folder others can enter: only the socket's own mode and the check guard it
start_daemon A --control "$SOCK_A" --allow-qemu-arg -d
check "the control socket is 0600 under umask 000" test "$(mode_of "$SOCK_A")" = 600
check "an older 0755 state directory is tightened to 0700" test "$(mode_of "$WORK/A")" = 700
check "... and its snapshots folder" test "$(mode_of "$WORK/A/snapshots")" = 700
check "... and the log says so" grep -q "A: mode 0755 is now 0700" A.log
check "root may use the control socket" ctl "$SOCK_A" "$BNF" vm list
check "user nobody cannot open the 0600 socket" fails_with "Permission denied" ctl "$SOCK_A" as_nobody "$BNF" vm list
chmod 666 "$SOCK_A"  # a careless chmod: the credential check still holds
check "user nobody is refused by its credentials, non-zero exit" \
  fails_with "bnf: error: control access refused: uid 65534 is not root or the daemon's user" \
  ctl "$SOCK_A" as_nobody "$BNF" vm list
check "the daemon logs the refusal" grep -q "warn: control access refused: uid 65534" A.log
check "the daemon stays up and serves root" ctl "$SOCK_A" "$BNF" vm list

# --- malformed requests from an allowed client: an error answer, never a crash
raw_request() {  # raw_request SOCK JSON_LINE: prints the daemon's answer line
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()+b"\n"); print(s.makefile().readline().strip())' "$1" "$2"
}
answers_with() { local text=$1; shift; raw_request "$@" | grep -qF -- "$text"; }
check "a request whose op is not a string is answered with the field named" \
  answers_with "message field 'op' has the wrong type" "$SOCK_A" '{"op": 5}'
check "a progress flag that is not a bool likewise" \
  answers_with "message field 'progress' has the wrong type" "$SOCK_A" '{"op": "vm.list", "progress": "yes"}'
check "an unknown switchover check is refused, not taken as on" \
  answers_with "switchover_check must be one of auto, on, full, written, off, not 'onn'" "$SOCK_A" \
  '{"op": "migrate", "name": "x", "to": "bnf+tcp:127.0.0.1:1", "switchover_check": "onn"}'
check "a definition with a negative memory size is refused" answers_with '"ok":false' "$SOCK_A" \
  '{"op": "vm.create", "definition": {"name": "n", "memory_bytes": -1}}'
check "after them the daemon still serves" ctl "$SOCK_A" "$BNF" vm list

# --- extra QEMU arguments
printf '#!/bin/sh\ntouch %s/helper-ran\n' "$WORK" >helper
chmod 755 helper
check "vm create with -netdev bridge,helper= is refused by name" \
  fails_with "QEMU argument -netdev bridge,id=n0,helper=$WORK/helper is not allowed for bnf VMs: helper= runs a program as root" \
  ctl "$SOCK_A" "$BNF" vm create evil --memory 64M -- -kernel "$GUEST" -netdev "bridge,id=n0,helper=$WORK/helper"
check "... spelt --netdev and hidden behind ',,,'" fails_with "helper= runs a program as root" \
  ctl "$SOCK_A" "$BNF" vm create evil --memory 64M -- --netdev "bridge,id=n0,br=br0,,,helper=$WORK/helper"
check "vm create with -chardev pipe is refused by name" fails_with "backend pipe is not one bnf allows" \
  ctl "$SOCK_A" "$BNF" vm create evil --memory 64M -- -chardev "pipe,id=c0,path=$WORK/p"
check "vm create with -plugin is refused by name" \
  fails_with "QEMU argument -plugin is not allowed for bnf VMs (allow it with --allow-qemu-arg -plugin)" \
  ctl "$SOCK_A" "$BNF" vm create evil --memory 64M -- -plugin "file=$WORK/x.so"
check "no refused VM was defined" test "$(ctl "$SOCK_A" "$BNF" vm list --json)" = "[]"
set +e; ctl "$SOCK_A" "$BNF" vm start evil >/dev/null 2>&1; set -e
check "the helper never ran" test ! -e helper-ran

# A peer cannot bring in what a local user could not: A allows -d, B does not.
start_daemon B
ctl "$SOCK_A" "$BNF" vm create web1 --memory 64M -- -kernel "$GUEST" -append "hot=1%" -d guest_errors >/dev/null
PIDS+=("$(field "$(ctl "$SOCK_A" "$BNF" vm start web1 --json)" qemu_pid)")
wait_guest_running "$(field "$(ctl "$SOCK_A" "$BNF" vm status web1 --json)" ram_file)"
check "a migration bringing -d to a daemon that does not allow it is refused by name" \
  fails_with "QEMU argument -d is not allowed for bnf VMs (allow it with --allow-qemu-arg -d)" \
  ctl "$SOCK_A" "$BNF" migrate web1 "$URI_B"
check "... the VM still runs on A" test "$(field "$(ctl "$SOCK_A" "$BNF" vm status web1 --json)" state)" = running
check "... B started no QEMU for it" test "$(vm B vm list --json)" = "[]"

# --- the state directory's files after pushes (full, then incremental), under umask 000
"$BNF" image make img --size 16M --seed 1
(umask 000
 "$BNF" image push img --peer-key "$WORK/peer.key" --name pushed --to "$URI_A" >/dev/null
 "$BNF" image mutate img --percent 5 --seed 2 >/dev/null
 "$BNF" image push img --peer-key "$WORK/peer.key" --name pushed --to "$URI_A" >/dev/null)
check "the pushed snapshot's folder is 0700" test "$(mode_of A/snapshots/pushed)" = 700
check "its manifest (the digest key) is 0600" test "$(mode_of A/snapshots/pushed/manifest.json)" = 600
check "its image is 0600" test "$(mode_of "$(readlink -f A/snapshots/pushed/image)")" = 600
check "its digest table is 0600" bash -c "[ \"\$(stat -c %a A/snapshots/pushed/digests.*)\" = 600 ]"
check "the VM's folder is 0700" test "$(mode_of A/vms/web1)" = 700
check "nothing in the state directory is open to the group or others" private_tree A
check "nothing in B's either" private_tree B

# --- --control-group: its members get in, nobody else
groupadd "$GROUP"
useradd -M -N -g nogroup -G "$GROUP" -d /nonexistent -s /usr/sbin/nologin "$MEMBER"
start_daemon C --control-group "$GROUP"
SOCK_C=$WORK/C/control.sock
check "with --control-group the socket is 0660 with that group" test "$(stat -c '%a %G' "$SOCK_C")" = "660 $GROUP"
check "... and the state directory 0710 with it (members pass through to the socket)" \
  test "$(stat -c '%a %G' "$WORK/C")" = "710 $GROUP"
check "a member of the group (user database) may use it" \
  ctl "$SOCK_C" setpriv --reuid="$MEMBER" --regid=nogroup --init-groups "$BNF" vm list
check "a client running with the group as its group may use it" \
  ctl "$SOCK_C" setpriv --reuid=65534 --regid="$GROUP" --clear-groups "$BNF" vm list
check "a non-member cannot open the socket" fails_with "Permission denied" ctl "$SOCK_C" as_nobody "$BNF" vm list
chmod 666 "$SOCK_C"; chmod o+x "$WORK/C"  # careless chmods: the credential check still holds
check "a non-member is refused by its credentials, naming the group" \
  fails_with "control access refused: uid 65534 is not root, the daemon's user or in group $GROUP" \
  ctl "$SOCK_C" as_nobody "$BNF" vm list
check "an unknown control group stops the daemon at start" \
  fails_with "unknown group 'no-such-group-$$' (--control-group)" \
  "$BNF" daemon --state-dir "$WORK/D" --listen bnf+tcp:127.0.0.1:0 --peer-key "$WORK/peer.key" \
  --control-group "no-such-group-$$"
check "--allow-qemu-arg of an option bnf sets itself stops the daemon at start" \
  fails_with "--allow-qemu-arg -m: bnf sets -m itself" \
  "$BNF" daemon --state-dir "$WORK/D" --listen bnf+tcp:127.0.0.1:0 --peer-key "$WORK/peer.key" --allow-qemu-arg -m

ctl "$SOCK_A" "$BNF" vm stop web1 >/dev/null
checks_done
