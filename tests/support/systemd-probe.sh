#!/bin/bash
# The probe tests/systemd_boot.rs runs inside a booted Debian 12 (systemd as PID 1, under
# systemd-nspawn): it installs the package and checks, as an operator would, what the
# daemon does under a real systemd. One line per check goes to /shared/results:
#   check<TAB>ok|FAIL<TAB>detail
# The machine runs in a network namespace the test made; the IMDS simulator listens on its
# loopback, its port in /shared/imds-port. Needs what a minimal Debian has (bash, curl) and
# python3-minimal (the forged LoadCredential= peer).
set -u
R=/shared/results
: > "$R"
PORT=$(cat /shared/imds-port)
SOCK=/run/imds-credd/credentials.sock
CONF=/etc/imds-credd/config.toml
DROPINS=/etc/systemd/system/imds-credd.service.d

record() { printf '%s\t%s\t%s\n' "$1" "$2" "$(printf '%s' "$3" | tr '\n\t' '  ' | cut -c1-300)" >> "$R"; }
# check NAME COMMAND...: runs COMMAND; ok when it exits 0, its output is the detail.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then record "$name" ok "$out"; else record "$name" FAIL "$out"; fi
}
# wait_for SECONDS COMMAND...: true once COMMAND succeeds, polling every 0.2 s.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
http_code() { curl -s --max-time 10 --unix-socket "$SOCK" -o /dev/null -w '%{http_code}' "http://localhost$1"; }
serves() { [ "$(http_code /v1/credentials)" = 200 ]; }
main_pid() { systemctl show -p MainPID --value imds-credd; }
restarts() { systemctl show -p NRestarts --value imds-credd; }
is_active() { [ "$(systemctl is-active imds-credd)" = active ]; }

write_config() {
    cat > "$CONF" <<EOF
[imds]
endpoint = "http://127.0.0.1:$PORT"
$1
EOF
}

# The simulator's address through the SDKs' variable, so the start at install needs no
# edit of the package's config file (a conffile) first.
install_enables_and_starts() {
    mkdir -p "$DROPINS"
    printf '[Service]\nEnvironment=AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:%s\n' "$PORT" > "$DROPINS/imds.conf"
    dpkg -i /root/imds-credd.deb >/dev/null || return 1
    [ "$(systemctl is-enabled imds-credd)" = enabled ] || { echo "not enabled"; return 1; }
    is_active || { echo "not started"; return 1; }
    wait_for 10 serves || { echo "no 200 from the socket"; return 1; }
    write_config ""
    echo "enabled, active, 200"
}

ready_and_status() {
    # Type=notify: active means READY=1 arrived.
    is_active || return 1
    local status
    status=$(systemctl show -p StatusText --value imds-credd)
    echo "$status"
    [[ "$status" == "role demo-role; credentials expire in "* ]]
}

file_sink_through_a_drop_in() {
    id app >/dev/null 2>&1 || useradd --create-home app || return 1
    install -d -o app -g app -m 0700 /home/app/.aws
    write_config '[[file]]
path = "/home/app/.aws/credentials"
profile = "instance"
owner = "app"'
    mkdir -p "$DROPINS"
    printf '[Service]\nReadWritePaths=-/home/app/.aws\n' > "$DROPINS/home-app.conf"
    systemctl daemon-reload
    systemctl restart imds-credd || return 1
    wait_for 10 grep -q aws_access_key_id /home/app/.aws/credentials || { echo "no file"; return 1; }
    stat -c '%U %a' /home/app/.aws/credentials
    [ "$(stat -c '%U %a' /home/app/.aws/credentials)" = "app 600" ]
}

reload_good() {
    local pid
    pid=$(main_pid)
    write_config '[[file]]
path = "/home/app/.aws/credentials"
profile = "instance"
owner = "app"

[[env]]
path = "/run/imds-credd/credentials.env"
format = "systemd"'
    systemctl reload imds-credd || return 1
    wait_for 10 grep -q AWS_ACCESS_KEY_ID= /run/imds-credd/credentials.env || { echo "no env file after reload"; return 1; }
    [ "$(main_pid)" = "$pid" ] || { echo "the daemon was restarted"; return 1; }
    echo "reloaded in place (pid $pid), [[env]] sink started"
}

reload_bad() {
    local pid good
    pid=$(main_pid)
    good=$(cat "$CONF")
    printf '%s\n[refresh]\nbefore_expiry = "15 parsecs"\n' "$good" > "$CONF"
    if systemctl reload imds-credd 2>/dev/null; then echo "a bad config was accepted"; printf '%s\n' "$good" > "$CONF"; return 1; fi
    printf '%s\n' "$good" > "$CONF"
    is_active && [ "$(main_pid)" = "$pid" ] && serves || { echo "the daemon did not keep running"; return 1; }
    echo "refused; same pid $pid still serving"
}

watchdog_restart() {
    printf '[Service]\nWatchdogSec=3s\nRestartSec=1s\n' > "$DROPINS/watchdog.conf"
    systemctl daemon-reload
    systemctl restart imds-credd || return 1
    local pid before
    pid=$(main_pid)
    before=$(restarts)
    kill -STOP "$pid"
    wait_for 30 bash -c "[ \"\$(systemctl show -p MainPID --value imds-credd)\" != $pid ] && [ \"\$(systemctl is-active imds-credd)\" = active ]" \
        || { echo "not restarted"; return 1; }
    journalctl -u imds-credd --no-pager | grep -q "Watchdog timeout" || { echo "no watchdog timeout in the journal"; return 1; }
    wait_for 10 serves || return 1
    echo "pid $pid -> $(main_pid), restarts $before -> $(restarts)"
    rm -f "$DROPINS/watchdog.conf"
    systemctl daemon-reload
    systemctl restart imds-credd
}

crash_restart() {
    local pid
    pid=$(main_pid)
    kill -KILL "$pid"
    wait_for 20 bash -c "[ \"\$(systemctl show -p MainPID --value imds-credd)\" != $pid ] && [ \"\$(systemctl is-active imds-credd)\" = active ]" \
        || { echo "not restarted"; return 1; }
    wait_for 10 serves || return 1
    echo "pid $pid -> $(main_pid)"
}

# The host arms the fault (one answer with a non-ASCII AccessKeyId) when asked.
malformed_answer_recovered() {
    touch /shared/request-malformed
    wait_for 10 test -e /shared/request-malformed.done || { echo "the host did not arm the fault"; return 1; }
    local started=$SECONDS pid
    systemctl restart imds-credd || return 1
    pid=$(main_pid)
    wait_for 10 serves || { echo "no 200 within 10 s"; return 1; }
    echo "served 200 $((SECONDS - started)) s after the restart"
    sleep 3
    [ "$(main_pid)" = "$pid" ] && is_active || { echo "the daemon died or was restarted"; return 1; }
}

socket_activated_first_request() {
    systemctl stop imds-credd 2>/dev/null
    systemctl enable --now imds-credd.socket 2>/dev/null || return 1
    [ "$(systemctl is-active imds-credd)" != active ] || { echo "the service did not stop"; return 1; }
    local code
    code=$(http_code /v1/credentials)
    echo "first request: $code"
    [ "$code" = 200 ] && is_active
}

restart_under_load() {
    local codes=/tmp/codes
    : > "$codes"
    (for _ in $(seq 1 600); do http_code /v1/credentials >> "$codes"; echo >> "$codes"; done) &
    local loop=$!
    for _ in 1 2 3; do
        sleep 1
        systemctl restart imds-credd
    done
    wait "$loop"
    local total failed
    total=$(grep -c . "$codes")
    failed=$(grep -vc '^200$' "$codes")
    echo "$total requests, $failed not 200 across 3 restarts"
    [ "$total" = 600 ] && [ "$failed" = 0 ]
}

UNIT_SOCK=/run/imds-credd/unit-credentials.sock
JOB_OUT=/run/job.out

# A oneshot unit as the recipe in docs/systemd-units.md writes it, printing what it got
# (never a secret: the access key id, sizes, modes, a digest of the JSON) to $JOB_OUT.
write_job_unit() {
    cat > "/etc/systemd/system/$1" <<EOF
[Service]
Type=oneshot
DynamicUser=yes
LoadCredential=aws:$UNIT_SOCK
LoadCredential=aws.json:$UNIT_SOCK
Environment=AWS_SHARED_CREDENTIALS_FILE=%d/aws
StandardOutput=truncate:$JOB_OUT
ExecStart=/bin/sh -c 'echo uid \$(id -u); echo mode \$(stat -c %%a "\$AWS_SHARED_CREDENTIALS_FILE"); echo bytes \$(wc -c < "\$AWS_SHARED_CREDENTIALS_FILE"); echo key \$(sed -n "s/^aws_access_key_id = //p" "\$AWS_SHARED_CREDENTIALS_FILE"); echo json \$(sha256sum < "\$CREDENTIALS_DIRECTORY/aws.json" | cut -c1-64)'
EOF
}
job_field() { sed -n "s/^$1 //p" "$JOB_OUT"; }
served_body() { curl -s --max-time 10 --unix-socket "$SOCK" http://localhost/v1/credentials; }
served_key() { served_body | sed -n 's/.*"AccessKeyId":"\([^"]*\)".*/\1/p'; }
served_json_sha() { served_body | sha256sum | cut -c1-64; }
key_changed_from() { [ "$(served_key)" != "$1" ]; }

unit_gets_credentials() {
    write_config '[refresh]
max_interval = "3s"

[[unit]]
name = "job.service"'
    write_job_unit job.service
    write_job_unit other.service
    systemctl daemon-reload
    systemctl restart imds-credd || return 1
    wait_for 10 serves || return 1
    [ "$(stat -c %a "$UNIT_SOCK")" = 600 ] || { echo "socket mode $(stat -c %a "$UNIT_SOCK")"; return 1; }
    systemctl start job.service || { echo "job failed"; return 1; }
    local key json uid
    key=$(job_field key); json=$(job_field json); uid=$(job_field uid)
    echo "uid $uid, file mode $(job_field mode), $(job_field bytes) bytes, key $key"
    [ "$uid" != 0 ] && [ -n "$key" ] && [ "$key" = "$(served_key)" ] || { echo "not the served set"; return 1; }
    [ "$json" = "$(served_json_sha)" ] || { echo "aws.json is not the socket's answer"; return 1; }
    journalctl -u imds-credd --no-pager | grep -q 'credentials given to a unit' || { echo "not logged"; return 1; }
}

# The job's next run after a rotation, started by a timer (as the recipe's is, with a
# one-shot trigger in place of OnCalendar=), gets the new set.
job_ran() { [ -n "$(job_field json)" ]; }
unit_gets_the_rotated_set() {
    local before after
    before=$(served_key)
    touch /shared/request-rotate
    wait_for 10 test -e /shared/request-rotate.done || { echo "the host did not rotate"; return 1; }
    wait_for 15 key_changed_from "$before" || { echo "the daemon did not pick up the rotation"; return 1; }
    printf '[Timer]\nOnActiveSec=1s\nAccuracySec=1ms\n' > /etc/systemd/system/job.timer
    systemctl daemon-reload
    rm -f "$JOB_OUT"
    systemctl start job.timer || { echo "job.timer failed"; return 1; }
    wait_for 15 job_ran || { echo "the timer did not run job.service"; return 1; }
    after=$(job_field key)
    echo "run by job.timer (triggered $(systemctl show -p LastTriggerUSec --value job.timer)): $before -> $after"
    [ "$after" != "$before" ] && [ "$after" = "$(served_key)" ]
}

unlisted_unit_gets_nothing() {
    systemctl start other.service || { echo "other.service failed"; return 1; }
    echo "other.service got $(job_field bytes) bytes"
    [ "$(job_field bytes)" = 0 ] && journalctl -u imds-credd --no-pager | grep 'other.service' | grep -q 'no \[\[unit\]\] entry names this unit'
}

# Another uid binds the name systemd would for job.service and connects: refused by the
# socket's mode, and with the mode opened (as an operator might for a user manager), by
# the peer check.
forged_peer_gets_nothing() {
    local forge='import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(b"\0e6bcf1fad9213c61/unit/job.service/aws")
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES")
    sys.exit(0)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(len(data))'
    local closed opened
    closed=$(setpriv --reuid=65534 --regid=65534 --clear-groups python3 -c "$forge" "$UNIT_SOCK" 2>&1)
    chmod 0666 "$UNIT_SOCK"
    opened=$(setpriv --reuid=65534 --regid=65534 --clear-groups python3 -c "$forge" "$UNIT_SOCK" 2>&1)
    chmod 0600 "$UNIT_SOCK"
    echo "mode 0600: $closed; mode 0666: $opened bytes"
    [ "$closed" = EACCES ] && [ "$opened" = 0 ] && journalctl -u imds-credd --no-pager | grep -q 'uid 65534, not 0'
}

# The container endpoint on 169.254.170.23 as docs/containers.md configures it: the unit's
# ExecStartPre=+ puts the address on lo, ExecStopPost=+ takes it off. The client here is
# on the machine itself, so its source is the address: the drop-in lets it through the
# unit's IPAddressDeny= as an operator's lets a container subnet through.
CONTAINER_TOKEN=/run/imds-credd/container/token
has_container_address() { python3 -c 'import socket; socket.socket().bind(("169.254.170.23", 0))' 2>/dev/null; }
container_code() {
    curl -s --max-time 10 -o /dev/null -w '%{http_code}' -H "Authorization: $(cat "$CONTAINER_TOKEN")" \
        http://169.254.170.23:28679/v1/credentials
}
container_key() {
    curl -s --max-time 10 -H "Authorization: $(cat "$CONTAINER_TOKEN")" http://169.254.170.23:28679/v1/credentials \
        | sed -n 's/.*"AccessKeyId" *: *"\([^"]*\)".*/\1/p'
}
container_address_follows_the_service() {
    write_config '[container]
listen = ["127.0.0.1:28679", "169.254.170.23:28679"]
token_file = "/run/imds-credd/container/token"'
    printf '[Service]\nIPAddressAllow=169.254.170.23/32\n' > "$DROPINS/container-clients.conf"
    systemctl daemon-reload
    has_container_address && { echo "the address was up before the service"; return 1; }
    systemctl restart imds-credd || { journalctl -u imds-credd --no-pager -n 4 -o cat; return 1; }
    has_container_address || { echo "not on lo after start"; return 1; }
    wait_for 10 test -s "$CONTAINER_TOKEN" || { echo "no token file"; return 1; }
    local code key
    code=$(container_code); key=$(container_key)
    [ "$code" = 200 ] && [ -n "$key" ] && [ "$key" = "$(served_key)" ] || { echo "169.254.170.23: $code, key '$key'"; return 1; }
    systemctl stop imds-credd 2>/dev/null
    has_container_address && { echo "still on lo after stop"; return 1; }
    systemctl start imds-credd || return 1
    has_container_address || { echo "not on lo after a new start"; return 1; }
    echo "up at start (200, the served key $key), down at stop, up again"
}

security_inside() {
    systemd-analyze security --no-pager --threshold=20 imds-credd | tail -1
    [ "${PIPESTATUS[0]}" = 0 ]
}

purge_removes_everything() {
    dpkg --purge imds-credd >/dev/null || return 1
    local left=""
    for path in /etc/imds-credd /var/lib/imds-credd /run/imds-credd /usr/bin/imds-credd \
        /lib/systemd/system/imds-credd.service /etc/systemd/system/multi-user.target.wants/imds-credd.service \
        /etc/systemd/system/sockets.target.wants/imds-credd.socket; do
        [ -e "$path" ] && left="$left $path"
    done
    systemctl is-active --quiet imds-credd && left="$left (service still running)"
    systemctl is-active --quiet imds-credd.socket && left="$left (socket still listening)"
    has_container_address && left="$left (169.254.170.23 still on lo)"
    [ -z "$left" ] || { echo "left behind:$left"; return 1; }
    echo "nothing left"
}

check install_enables_and_starts install_enables_and_starts
check ready_and_status ready_and_status
check file_sink_through_a_drop_in file_sink_through_a_drop_in
check reload_good reload_good
check reload_bad reload_bad
check watchdog_restart watchdog_restart
check crash_restart crash_restart
check malformed_answer_recovered malformed_answer_recovered
check socket_activated_first_request socket_activated_first_request
check restart_under_load restart_under_load
check unit_gets_credentials unit_gets_credentials
check unit_gets_the_rotated_set unit_gets_the_rotated_set
check unlisted_unit_gets_nothing unlisted_unit_gets_nothing
check forged_peer_gets_nothing forged_peer_gets_nothing
check container_address_follows_the_service container_address_follows_the_service
check security_inside security_inside
journalctl -b --no-pager -o cat > /shared/journal.txt 2>&1
check purge_removes_everything purge_removes_everything
touch /shared/done
systemctl poweroff --no-block
