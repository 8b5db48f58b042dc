#!/usr/bin/env bash
# PID 1 in QEMU: the service table, log rings and `logs`, restart backoff
# and the crash-loop hold, orphan reaping, reload on SIGHUP, and the hardware
# watchdog (i6300esb) resetting a frozen init. One boot of a freshly flashed
# disk of IMAGE (x86_64), driven over the serial console.
#
#   tests/init/init-qemu.sh IMAGE
#
# A third boot powers off from the menu. Prints "N passed, N failed" and the
# backoff delays it saw.
set -euo pipefail
IMAGE=$(realpath "${1:?usage: init-qemu.sh IMAGE}")
HERE=$(cd "$(dirname "$0")/../../scripts" && pwd)
LAB=ghi
. "$HERE/qemu-common"
. "$HERE/lab"
. "$HERE/qemu-lab"
[ "$arch" = x86_64 ] || { echo "init tests run on the x86_64 image (i6300esb)" >&2; exit 2; }

# shell CMD PATTERN [LIMIT]: runs CMD in the console's shell (menu 7), waits for
# PATTERN in its output and returns to the menu.
shell() {
    console_do 7 'Leave the shell' 20 || return 1
    console_do "$1; exit" "$2" "${3:-30}"
}

boot_router 1
check "boots to a ready gatewayd (DHCP socket bound)" wait_serial 'init: gatewayd ready' "$BOOT_TIMEOUT"
check "the boot timeline names when gatewayd became ready" wait_serial 'boot timeline:.*gatewayd-ready=' 30
# gatewayd does not wait for dbus, and on a busy machine it can be ready first.
check "dbus is ready through its notify descriptor" wait_serial 'init: dbus ready' 60
wait_serial 'init: rauc started' 30 || true
check "rauc starts only after dbus is ready" \
    awk '/init: dbus ready/ { d = NR } /init: rauc started/ { r = NR } END { exit !(d && r > d) }' "$SERIAL"
check "the hardware watchdog is armed" grep -q 'watchdog: /dev/watchdog.* armed' "$SERIAL"
wait_serial 'Choice' 60 || true

# logs (logread-like): init's own ring and a service's, through init's socket.
check "logs shows init's ring" shell 'logs -n 3 init | grep -c "init:" | sed "s/^/INITLINES=/"' 'INITLINES=3'
# services.toml's nice: RAUC yields the CPU to gatewayd (field 19 of /proc/PID/stat).
check "the service table's nice applies: rauc at 10, gatewayd at 0" \
    shell 'echo NICE=$(cut -d" " -f19 /proc/$(pidof rauc)/stat),$(cut -d" " -f19 /proc/$(pidof gatewayd)/stat)' 'NICE=10,0'
check "logs shows gatewayd's output" shell 'logs gatewayd | grep -q "gatewayd: started" && echo GW-LOG-$((1+1))' 'GW-LOG-2'

# Entropy: a fresh 512-byte seed on /data at every boot.
check "an entropy seed is saved on /data" shell 'echo SEED=$(wc -c </data/gatehouse/random-seed)' 'SEED=512'

# The menu on tty1, the screen of a machine with a keyboard: keys typed on the
# emulated PS/2 keyboard, the screen read back as text (/dev/vcs1) from the
# serial console's shell.
# tty1_shows TEXT: TEXT appears on tty1's screen within 20 s.
tty1_shows() {
    shell "for i in \$(seq 20); do tr -s ' ' </dev/vcs1 | grep -q '$1' && break; sleep 1; done; tr -s ' ' </dev/vcs1 | grep -c '$1' | sed 's/^/TTY1=/'" 'TTY1=[1-9]' 40
}
check "tty1 shows the recovery menu" tty1_shows 'Gatehouse recovery console'
check "tty1 has no status yet" shell "tr -s ' ' </dev/vcs1 | grep -c 'boot order' | sed 's/^/TTY1=/'" 'TTY1=0'
type_keys $'1\n' || true
check "the status chosen on tty1's keyboard shows there" tty1_shows 'boot order'
type_keys $'7\n' || true
check "tty1's menu opens a shell there" tty1_shows 'Gatehouse recovery shell'
type_keys $'touch /tmp/typed-on-tty1\nexit\n' || true
# The keys may still be on their way through a busy guest: look for 20 s.
check "tty1's shell runs what is typed" \
    shell 'for i in $(seq 20); do [ -e /tmp/typed-on-tty1 ] && break; sleep 1; done; [ -e /tmp/typed-on-tty1 ] && echo TTY1-SHELL-$((1+1))' 'TTY1-SHELL-2' 40

# Owner services: first a broken file (reported, ignored), then a crashing
# service and one that abandons children every half second.
shell "printf '[[service]]\\nname = \"x\"\\nbogus = 1\\n' >/data/gatehouse/services.toml; kill -HUP 1; echo HUP-SENT" 'HUP-SENT' || true
check "a broken owner services file is reported and ignored" wait_serial 'services: /data/gatehouse/services.toml.*ignored' 20
cat >"$LAB_DIR/services.toml" <<'EOF'
[[service]]
name = "flaky"
command = ["/bin/sh", "-c", "echo flaky runs; kill -KILL $$"]
crash_limit = 5
crash_hold = 600.0
console_log = true
[[service]]
name = "orphans"
command = ["/bin/sh", "-c", "while true; do (sleep 0.1 &); sleep 0.5; done"]
EOF
# The file goes through the shell as a printf of its escaped text.
body=$(sed 's/\\/\\\\/g; s/"/\\"/g; s/%/%%/g; s/\$/\\$/g' "$LAB_DIR/services.toml" | awk '{ printf "%s\\n", $0 }')
shell "printf \"$body\" >/data/gatehouse/services.toml; kill -HUP 1; echo HUP-SENT" 'HUP-SENT' || true
check "a service killed by a signal is restarted" wait_serial 'flaky (pid [0-9]*) ended: signal SIGKILL; restart in' 20
check "killed five times quickly in a row is a crash loop, held off" \
    wait_serial 'flaky (pid [0-9]*) ended: signal SIGKILL; crash loop (5 quick exits in a row), held for 600s' 60
delays=$(sed -n 's/.*flaky (pid [0-9]*) ended: signal SIGKILL; restart in \([0-9.]*\)s.*/\1/p' "$SERIAL" | tr '\n' ' ')
echo "     backoff delays seen: $delays"
# 1, 2, 4, 8 s, each within the +-20% jitter.
check "the backoff doubles (1, 2, 4, 8 s, +-20%)" python3 -c "
import sys
d = [float(x) for x in sys.argv[1].split()]
want = [1, 2, 4, 8]
sys.exit(not (len(d) == 4 and all(0.8 * w <= x <= 1.2 * w for x, w in zip(d, want))))" "$delays"
check "the held service is shown as a crash loop" shell 'cat /run/gatehouse/services' 'flaky .*crash loop, next try in'
# The orphans service has abandoned ~20 children by now; none may linger as a zombie.
zombies='z=0; for i in 1 2 3 4 5; do n=$(grep -l "^[0-9]* ([^)]*) Z" /proc/[0-9]*/stat 2>/dev/null | wc -l); [ $n -gt $z ] && z=$n; sleep 1; done; echo ZOMBIES=$z'
check "abandoned children are reaped: no zombies" shell "$zombies" 'ZOMBIES=[01][[:space:]]*$'
check "the orphan-maker keeps running" shell 'cat /run/gatehouse/services' 'orphans .*running pid'

# The clock never starts before the time saved on /data: pretend the last
# boot was in 2031 (the RTC says otherwise); the next boot must move forward.
shell "echo 1924992000 >/data/gatehouse/clock; sync; echo CLOCK-\$((1+1))" 'CLOCK-2' || true

# Watchdog: freeze PID 1; the i6300esb must reset the machine (QEMU runs
# with -no-reboot, so the reset ends it) without an orderly shutdown.
console_do 7 'Leave the shell' 20 || true
mark=$(wc -l <"$SERIAL")
frozen=$(date +%s)
printf '%s\n' 'gatehouse-console freeze-init' >"$CONSOLE_IN"
check "freeze-init stops PID 1" wait_serial_after "$mark" 'init frozen' 20
check "the watchdog resets the frozen machine" wait_qemu_exit 120
echo "     watchdog reset $(($(date +%s) - frozen)) s after the freeze (timeout 30 s)"
check "the reset was the watchdog's, not a shutdown" \
    sh -c "tail -n +$((mark + 1)) '$SERIAL' | grep -q 'shutdown:' && exit 1 || exit 0"

# A fatal error in PID 1 (injected through grubenv's extra_cmdline) on a
# normal boot: the recovery console stays, the running services keep serving,
# the watchdog is still fed, and the menu's reboot still works.
grubenv_set extra_cmdline=gatehouse.inject=panic
boot_router 2
check "PID 1's panic is caught" wait_serial 'init: fatal error: gatehouse.inject=panic' "$BOOT_TIMEOUT"
check "it falls back to the recovery console" wait_serial 'only the recovery console is supervised' 20
check "the clock moved forward to the saved time" grep -q 'clock: behind the last saved time; moved forward to it' "$SERIAL"
wait_serial 'Choice' 60 || true
check "gatewayd keeps serving after init's fatal error" shell 'pidof gatewayd && echo GW-ALIVE-$((1+1))' 'GW-ALIVE-2'
check "the system time is from 2031 on" shell 'echo YEAR=$(date -u +%Y)' 'YEAR=203[1-9]'
sleep 40
check "the watchdog is still fed (40 s later the machine still runs)" kill -0 "$QEMU_PID"
console_do 8 'Rebooting' 20 || true
check "the menu's reboot works in recovery" wait_qemu_exit 60
check "and is an orderly shutdown" grep -q 'shutdown: RB_AUTOBOOT' "$SERIAL"

# Power off from the menu, on a normal boot: services stopped in order, the
# disk released, the machine off, all within bounds.
grubenv_set extra_cmdline=
boot_router 3
wait_serial 'Choice' "$BOOT_TIMEOUT" || true
wait_serial 'init: gatewayd ready' 60 || true
# gatewayd may be ready before dbus is: rauc (after dbus) must run for the order check.
wait_serial 'init: rauc started' 60 || true
mark=$(wc -l <"$SERIAL")
off=$(date +%s)
printf '%s\n' 9 >"$CONSOLE_IN"
check "the menu's power off turns the machine off within 60 s" wait_qemu_exit 60
echo "     power off took $(($(date +%s) - off)) s"
# rauc depends on dbus, so dbus may only stop once rauc has.
check "services stop in reverse dependency order (rauc before dbus)" \
    awk -v m="$mark" 'NR > m && /rauc \(pid [0-9]*\) stopped/ { r = NR } NR > m && /dbus \(pid [0-9]*\) stopped/ { d = NR } END { exit !(r && d > r) }' "$SERIAL"
check "the shutdown ends in a power off" grep -q 'shutdown: RB_POWER_OFF' "$SERIAL"
finish
