#!/usr/bin/env bash
# slurm-testbed.sh — a real single-node Slurm 22.05 (slurmctld + slurmd + slurmdbd,
# MariaDB accounting, munge auth) from Debian 12 packages, started by hand
# (no systemd), plus a seeded job mix for slurm-ledger's integration tests.
#
# Usage: slurm-testbed.sh {install|start|seed [--force]|status|stop|reset|ensure}
# See testbed/README.md.
set -euo pipefail

# ---------------------------------------------------------------- settings
STATE=${TESTBED_STATE:-/var/lib/slurm-testbed}
LOGS=${TESTBED_LOGS:-/var/log/slurm-testbed}
CLUSTER=testcluster
NODE=vm
CTLD_HOST=$(hostname -s 2>/dev/null || uname -n | cut -d. -f1)
RUN_SLURM=/run/slurm
RUN_MYSQL=/run/mysqld
MYSQL_SOCK=$RUN_MYSQL/mysqld.sock
MYSQL_PID=$RUN_MYSQL/mysqld.pid
MUNGE_PID=/run/munge/munged.pid
DB_NAME=slurm_acct_db
DB_USER=slurm
DB_PASS=slurm-testbed-pw
JOBDIR=$STATE/jobs
SCRIPTS=$STATE/scripts
SEED_ENV=$STATE/seed.env
SEEDED=$STATE/seeded
LOCK=/run/slurm-testbed.lock
HOOK_WRAPPER=/usr/local/libexec/slurm-ledger-hook   # slurmctld's PrologSlurmctld/EpilogSlurmctld
HOOK_CONF=$STATE/hook.conf                          # bin=/dump= lines the live tests write
RUNNING_SECS=${TESTBED_RUNNING_SECS:-900}   # the job left RUNNING after seed
PACKAGES=(slurmctld slurmd slurmdbd slurm-client munge mariadb-server mariadb-client procps)
TERMINAL_RE='^(COMPLETED|FAILED|CANCELLED.*|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|PREEMPTED|BOOT_FAIL|DEADLINE)$'

export LC_ALL=C.UTF-8
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
unset SLURM_CONF SLURM_TIME_FORMAT

# ---------------------------------------------------------------- helpers
log() { printf '[slurm-testbed %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "ERROR: $*"
    log "state dir: $STATE   logs: $LOGS (slurmctld.log slurmd.log slurmdbd.log mariadb.log munged.log)"
    exit 1
}

# wait_until DESC TIMEOUT_S LOGFILE CMD... : poll CMD every 0.5 s, bounded.
wait_until() {
    local desc=$1 timeout=$2 logf=$3; shift 3
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "ERROR: timed out after ${timeout}s waiting for: $desc"
            if [[ -n $logf ]]; then
                log "read $logf — last lines:"
                tail -n 25 "$logf" >&2 2>/dev/null || true
            fi
            die "$desc did not come up"
        fi
        sleep 0.5
    done
}

need_root() { [[ $(id -u) -eq 0 ]] || die "must run as root"; }

# Reason why this machine cannot host the testbed (empty if it can).
unavailable_reason() {
    if [[ $(id -u) -ne 0 ]]; then echo "not running as root"; return; fi
    if ! command -v apt-get >/dev/null 2>&1 && ! packages_installed; then
        echo "no apt-get (not a Debian system)"; return
    fi
    local id="" ver=""
    if [[ -r /etc/os-release ]]; then
        id=$(. /etc/os-release && echo "${ID:-}")
        ver=$(. /etc/os-release && echo "${VERSION_ID:-}")
    fi
    if [[ $id != debian ]]; then echo "not Debian (ID=${id:-unknown}); needs Debian 12"; return; fi
    if [[ $ver != 12 && ${TESTBED_ALLOW_OTHER_DEBIAN:-0} != 1 ]]; then
        echo "Debian $ver, not Debian 12 (Slurm 22.05); set TESTBED_ALLOW_OTHER_DEBIAN=1 to try anyway"; return
    fi
    if [[ -d /run/systemd/system ]] && [[ ${TESTBED_ALLOW_SYSTEMD:-0} != 1 ]]; then
        echo "systemd is running; this script starts daemons by hand and would fight the units (TESTBED_ALLOW_SYSTEMD=1 to override)"; return
    fi
}

packages_installed() {
    local p st
    for p in "${PACKAGES[@]}"; do
        st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) || return 1
        [[ $st == "install ok installed" ]] || return 1
    done
}

# The lock fd (9) must not leak into the daemons (they would hold the lock
# forever): every daemon launch below closes it with 9>&-.
LOCKED=0
take_lock() {
    ((LOCKED)) && return 0
    exec 9>"$LOCK"
    flock -w 900 9 || die "another slurm-testbed.sh holds $LOCK for more than 900 s"
    LOCKED=1
}

# pid_of PIDFILE NAME: print pid if PIDFILE names a live process called NAME.
pid_of() {
    local f=$1 name=$2 pid
    [[ -s $f ]] || return 1
    pid=$(tr -dc '0-9' <"$f")
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
    echo "$pid"
}
# find a daemon whose pidfile is lost: exact process name, first match
pid_by_name() { pgrep -x "$1" 2>/dev/null | head -n1; }
daemon_pid() { pid_of "$2" "$1" || pid_by_name "$1"; }

munge_up() { daemon_pid munged "$MUNGE_PID" >/dev/null && munge -n </dev/null | unmunge >/dev/null 2>&1; }
mariadb_up() { daemon_pid mariadbd "$MYSQL_PID" >/dev/null && mariadb-admin --socket="$MYSQL_SOCK" ping >/dev/null 2>&1; }
slurmdbd_up() { daemon_pid slurmdbd $RUN_SLURM/slurmdbd.pid >/dev/null && timeout 20 sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }
slurmctld_up() { daemon_pid slurmctld $RUN_SLURM/slurmctld.pid >/dev/null && timeout 20 scontrol ping 2>/dev/null | grep -q 'is UP'; }
node_up() {
    daemon_pid slurmd $RUN_SLURM/slurmd.pid >/dev/null || return 1
    local st
    st=$(timeout 20 sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1) || return 1
    [[ $st =~ ^(idle|mixed|allocated|completing|planned)$ ]]
}
all_up() { munge_up && mariadb_up && slurmdbd_up && slurmctld_up && node_up; }

# stop_daemon NAME PIDFILE TIMEOUT
stop_daemon() {
    local name=$1 pidf=$2 timeout=$3 pid
    pid=$(daemon_pid "$name" "$pidf") || { log "$name: not running"; rm -f "$pidf"; return 0; }
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "$name (pid $pid) ignored SIGTERM for ${timeout}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.3
    done
    rm -f "$pidf"
}

# ---------------------------------------------------------------- install
cmd_install() {
    need_root
    take_lock
    command -v apt-get >/dev/null || die "no apt-get: this script needs Debian 12"
    local added_policy=0
    # No init system: keep postinst scripts from trying to start daemons.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    log "apt-get install ${PACKAGES[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" \
        >"/tmp/slurm-testbed-apt.log" 2>&1 || { tail -n 30 /tmp/slurm-testbed-apt.log >&2; die "apt-get install failed (see /tmp/slurm-testbed-apt.log)"; }
    if ((added_policy)); then rm -f /usr/sbin/policy-rc.d; fi
    local u
    for u in alice bob carol; do
        if ! id -u "$u" >/dev/null 2>&1; then
            useradd -m -s /bin/bash "$u"
            log "created user $u"
        fi
    done
    log "installed: $(dpkg-query -W -f='${Version}' slurmctld) slurm, $(dpkg-query -W -f='${Version}' mariadb-server) mariadb"
}

# ---------------------------------------------------------------- configs
# write_if_changed FILE MODE OWNER (content on stdin); sets WROTE=1 when it wrote FILE
WROTE=0
write_if_changed() {
    local f=$1 mode=$2 owner=$3 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    WROTE=0
    if [[ -f $f ]] && cmp -s "$tmp" "$f"; then
        rm -f "$tmp"
    else
        install -m "$mode" -o "${owner%:*}" -g "${owner#*:}" "$tmp" "$f"
        rm -f "$tmp"
        log "wrote $f"
        WROTE=1
    fi
    chmod "$mode" "$f"; chown "$owner" "$f"
}

# 1 once write_configs changed slurm.conf, until a slurmctld has read it (started or reconfigured)
SLURM_CONF_CHANGED=0

# slurm.conf changed under a running slurmctld: have it (and slurmd) read it again.
apply_slurm_conf() {
    ((SLURM_CONF_CHANGED)) || return 0
    slurmctld_up || return 0
    log "slurm.conf changed: scontrol reconfigure"
    scontrol reconfigure || die "scontrol reconfigure failed (read $LOGS/slurmctld.log)"
    SLURM_CONF_CHANGED=0
    wait_until "slurmctld after reconfigure (scontrol ping)" 60 "$LOGS/slurmctld.log" slurmctld_up
}

write_configs() {
    install -d -m 0755 /etc/slurm "$STATE" "$LOGS" "$SCRIPTS"
    install -d -m 1777 "$JOBDIR"
    install -d -m 0755 -o slurm -g slurm "$RUN_SLURM" "$STATE/slurmctld"
    install -d -m 0755 "$STATE/slurmd"
    # log files the unprivileged daemons write
    local f
    for f in slurmctld.log slurmdbd.log; do
        [[ -e $LOGS/$f ]] || install -m 0640 -o slurm -g slurm /dev/null "$LOGS/$f"
    done
    [[ -e $LOGS/mariadb.log ]] || install -m 0640 -o mysql -g mysql /dev/null "$LOGS/mariadb.log"
    [[ -e $LOGS/munged.log ]] || install -m 0640 -o munge -g munge /dev/null "$LOGS/munged.log"
    # fake GPUs: character devices (same major/minor as /dev/null) so slurmd
    # does not complain that they are not devices
    local g
    for g in /dev/fakegpu0 /dev/fakegpu1; do
        [[ -c $g ]] || { rm -f "$g"; mknod -m 0666 "$g" c 1 3; }
    done

    # The hook wrapper before the slurm.conf that names it: a PrologSlurmctld that cannot run
    # would requeue every job.
    install -d -m 0755 "$(dirname "$HOOK_WRAPPER")"
    write_if_changed "$HOOK_WRAPPER" 0755 root:root <<EOF
#!/bin/sh
# generated by testbed/slurm-testbed.sh: slurmctld's PrologSlurmctld and EpilogSlurmctld.
# Runs slurm-ledger hook (/usr/local/bin/slurm-ledger, or the bin= line of $HOOK_CONF,
# which the live tests write) and always exits 0: a failing PrologSlurmctld requeues the job.
# A dump=FILE line appends the names (never the values) of the variables slurmctld set.
BIN=/usr/local/bin/slurm-ledger
DUMP=
if [ -r $HOOK_CONF ]; then
    while IFS='=' read -r key value; do
        case \$key in
            bin) BIN=\$value ;;
            dump) DUMP=\$value ;;
        esac
    done <$HOOK_CONF
fi
if [ -n "\$DUMP" ]; then
    { /usr/bin/env | /usr/bin/sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | /usr/bin/sort | /usr/bin/tr '\n' ' '; echo; } >>"\$DUMP" 2>/dev/null
fi
[ -x "\$BIN" ] && "\$BIN" hook
exit 0
EOF

    write_if_changed /etc/slurm/slurm.conf 0644 root:root <<EOF
# generated by testbed/slurm-testbed.sh — single node, no systemd
ClusterName=$CLUSTER
SlurmctldHost=$CTLD_HOST(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# step credential lifetime; also how long a requeued job waits before it is
# eligible again (default 120 s, minimum 5)
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
PrologFlags=Contain
ReturnToService=2
MailProg=/bin/true
KillWait=5
MinJobAge=600
SlurmdParameters=config_overrides
SlurmctldPidFile=$RUN_SLURM/slurmctld.pid
SlurmdPidFile=$RUN_SLURM/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
LogTimeFormat=iso8601_ms
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
PriorityType=priority/multifactor
DefMemPerCPU=256
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
JobAcctGatherParams=OverMemoryKill
JobCompType=jobcomp/none
# slurm-ledger's prolog/epilog hook (a no-op unless a test binds /run/slurm-ledger/hook.sock)
PrologSlurmctld=$HOOK_WRAPPER
EpilogSlurmctld=$HOOK_WRAPPER
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu,gres/gpu:fake
AccountingStorageEnforce=associations,limits,qos
AccountingStoreFlags=job_comment,job_env,job_script
TrackWCKey=yes
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=8 CoresPerSocket=8 ThreadsPerCore=1 RealMemory=16000 Gres=gpu:fake:2 State=UNKNOWN
PartitionName=compute Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=1-00:00:00 State=UP
EOF
    if ((WROTE)); then SLURM_CONF_CHANGED=1; fi

    write_if_changed /etc/slurm/gres.conf 0644 root:root <<EOF
# fake GPUs: /dev/null-like char devices, enough for gres scheduling and accounting
Name=gpu Type=fake File=/dev/fakegpu[0-1]
EOF

    write_if_changed /etc/slurm/slurmdbd.conf 0600 slurm:slurm <<EOF
# generated by testbed/slurm-testbed.sh (must be mode 600, owner SlurmUser)
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
DebugLevel=info
LogFile=$LOGS/slurmdbd.log
PidFile=$RUN_SLURM/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME
EOF

    write_if_changed "$SCRIPTS/burn.sh" 0755 root:root <<'EOF'
#!/bin/bash
# burn.sh BUSY_SECONDS SLEEP_SECONDS: busy-loop (so TotalCPU > 0), then sleep
echo "job=${SLURM_JOB_ID:-} step=${SLURM_STEP_ID:-} host=$(hostname)"
end=$((SECONDS + ${1:-1}))
while ((SECONDS < end)); do :; done
sleep "${2:-0}"
EOF

    write_if_changed "$SCRIPTS/multistep.sh" 0755 root:root <<EOF
#!/bin/bash
#SBATCH -J multi-step
#SBATCH -n 2
#SBATCH -t 10
# four steps, step .2 exits 3 -> job COMPLETED 0:0, DerivedExitCode 3:0
srun -n 1 hostname
srun -n 2 --mem-per-cpu=100M bash $SCRIPTS/burn.sh 3 1
srun -n 1 -J named-step bash -c 'sleep 2; exit 3' || true
srun -n 1 bash $SCRIPTS/burn.sh 2 1
exit 0
EOF

    write_if_changed "$SCRIPTS/array.sh" 0755 root:root <<EOF
#!/bin/bash
#SBATCH -J array-job
#SBATCH -t 5
# task 3 fails with exit 2
bash $SCRIPTS/burn.sh 1 2
[ "\$SLURM_ARRAY_TASK_ID" = 3 ] && exit 2
exit 0
EOF

    write_if_changed "$SCRIPTS/het.sh" 0755 root:root <<'EOF'
#!/bin/bash
#SBATCH -J het-job
#SBATCH -t 5 -n 1 --mem=200M
#SBATCH hetjob
#SBATCH -n 1 --mem=300M
srun hostname
EOF
}

# ---------------------------------------------------------------- daemons
start_munge() {
    if munge_up; then log "munged: already running"; return; fi
    install -d -m 0700 -o munge -g munge /etc/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null; then
            runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    install -d -m 0755 -o munge -g munge /run/munge
    install -d -m 0700 -o munge -g munge /var/lib/munge
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGE_PID"
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --log-file="$LOGS/munged.log" --pid-file="$MUNGE_PID" \
        </dev/null >>"$LOGS/munged.log" 2>&1 9>&- || die "munged failed to start (read $LOGS/munged.log)"
    wait_until "munged (munge -n | unmunge)" 20 "$LOGS/munged.log" munge_up
}

start_mariadb() {
    if mariadb_up; then log "mariadbd: already running"; return; fi
    install -d -m 0755 -o mysql -g mysql "$RUN_MYSQL"
    if [[ ! -d $STATE/mysql/mysql ]]; then
        log "initialising MariaDB datadir $STATE/mysql"
        install -d -m 0750 -o mysql -g mysql "$STATE/mysql"
        mariadb-install-db --user=mysql --datadir="$STATE/mysql" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOGS/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed (read $LOGS/mariadb-install.log)"
    fi
    log "starting mariadbd"
    setsid /usr/sbin/mariadbd --user=mysql --datadir="$STATE/mysql" \
        --socket="$MYSQL_SOCK" --pid-file="$MYSQL_PID" --log-error="$LOGS/mariadb.log" \
        --bind-address=127.0.0.1 --port=3306 \
        --innodb-buffer-pool-size=1024M --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 \
        </dev/null >>"$LOGS/mariadb.log" 2>&1 9>&- &
    disown || true
    wait_until "mariadbd (mariadb-admin ping)" 60 "$LOGS/mariadb.log" mariadb_up
}

setup_db() {
    mariadb --socket="$MYSQL_SOCK" -u root <<EOF || die "creating $DB_NAME / $DB_USER failed (read $LOGS/mariadb.log)"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'localhost';
FLUSH PRIVILEGES;
EOF
}

start_slurmdbd() {
    if slurmdbd_up; then log "slurmdbd: already running"; return; fi
    log "starting slurmdbd"
    /usr/sbin/slurmdbd </dev/null >>"$LOGS/slurmdbd.log" 2>&1 9>&- || die "slurmdbd failed to start (read $LOGS/slurmdbd.log)"
    wait_until "slurmdbd (sacctmgr show cluster)" 60 "$LOGS/slurmdbd.log" slurmdbd_up
}

sam() { sacctmgr -i "$@" >/dev/null 2>&1 || true; }   # duplicates are not errors

accounts_ok() {
    local a u q w
    a=$(sacctmgr -n -P show assoc cluster=$CLUSTER format=account,user 2>/dev/null) || return 1
    for pair in "research-team|root" "research-team|alice" "engineering|root" "engineering|alice" \
        "engineering|bob" "hpc_proj1|root" "hpc_proj1|bob" "hpc_proj1|carol"; do
        grep -qxF "$pair" <<<"$a" || return 1
    done
    grep -qx 'hpc_cust1|' <<<"$a" || return 1
    q=$(sacctmgr -n -P show qos format=name 2>/dev/null) || return 1
    grep -qx high <<<"$q" || return 1
    u=$(sacctmgr -n -P show user format=user,defaultaccount,defaultwckey 2>/dev/null) || return 1
    grep -qx 'alice|research-team|proj-alpha' <<<"$u" || return 1
    grep -qx 'bob|engineering|proj-beta' <<<"$u" || return 1
    grep -qx 'carol|hpc_proj1|' <<<"$u" || return 1
    grep -qx 'root|research-team|proj-alpha' <<<"$u" || return 1
    w=$(sacctmgr -n -P show assoc cluster=$CLUSTER user=bob account=engineering format=qos 2>/dev/null) || return 1
    grep -q high <<<"$w" || return 1
}

setup_accounts() {
    if accounts_ok; then log "accounts/users/QOS/WCKeys: already present"; return; fi
    log "adding cluster, accounts, users, QOS, WCKeys (sacctmgr)"
    sam add cluster $CLUSTER
    sam add qos high Priority=100
    sam add account research-team Cluster=$CLUSTER Description="Research team" Organization=science
    sam add account engineering Cluster=$CLUSTER Description=engineering Organization=eng
    sam add account hpc_cust1 Cluster=$CLUSTER Description="customer 1" Organization=cust1
    sam add account hpc_proj1 Cluster=$CLUSTER Parent=hpc_cust1 Description="customer 1 project 1" Organization=cust1
    sam modify account where name=hpc_proj1 cluster=$CLUSTER set QOS+=high
    sam add user root Cluster=$CLUSTER Account=research-team,engineering,hpc_proj1 DefaultAccount=research-team \
        AdminLevel=Administrator WCKeys=proj-alpha DefaultWCKey=proj-alpha
    sam add user alice Cluster=$CLUSTER Account=research-team,engineering DefaultAccount=research-team \
        WCKeys=proj-alpha DefaultWCKey=proj-alpha
    sam add user bob Cluster=$CLUSTER Account=engineering,hpc_proj1 DefaultAccount=engineering \
        WCKeys=proj-beta DefaultWCKey=proj-beta
    sam add user carol Cluster=$CLUSTER Account=hpc_proj1 DefaultAccount=hpc_proj1
    sam modify user where name=root set DefaultAccount=research-team DefaultWCKey=proj-alpha
    sam modify user where name=bob account=engineering cluster=$CLUSTER set QOS+=high
    accounts_ok || {
        sacctmgr -n -P show assoc format=account,user,qos >&2 || true
        sacctmgr -n -P show user format=user,defaultaccount,defaultwckey >&2 || true
        die "sacctmgr setup incomplete (read $LOGS/slurmdbd.log)"
    }
}

start_slurmctld() {
    if slurmctld_up; then log "slurmctld: already running"; return; fi
    log "starting slurmctld"
    SLURM_CONF_CHANGED=0
    /usr/sbin/slurmctld </dev/null >>"$LOGS/slurmctld.log" 2>&1 9>&- || die "slurmctld failed to start (read $LOGS/slurmctld.log)"
    wait_until "slurmctld (scontrol ping)" 60 "$LOGS/slurmctld.log" slurmctld_up
}

start_slurmd() {
    if node_up; then log "slurmd: already running, node $NODE up"; return; fi
    if ! daemon_pid slurmd $RUN_SLURM/slurmd.pid >/dev/null; then
        log "starting slurmd -N $NODE"
        /usr/sbin/slurmd -N "$NODE" </dev/null >>"$LOGS/slurmd.log" 2>&1 9>&- || die "slurmd failed to start (read $LOGS/slurmd.log)"
    fi
    local deadline=$((SECONDS + 60)) st=""
    until node_up; do
        st=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1 || true)
        if [[ $st =~ drain|down ]]; then
            scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
        fi
        ((SECONDS < deadline)) || {
            tail -n 25 "$LOGS/slurmd.log" >&2 || true
            die "node $NODE did not become idle within 60 s (state '${st:-?}'; read $LOGS/slurmd.log and $LOGS/slurmctld.log)"
        }
        sleep 0.5
    done
}

sacct_state() { sacct -n -X -P -j "$1" -o State 2>/dev/null | head -n1; }

smoke_job() {
    local id
    id=$(cd "$JOBDIR" && sbatch --parsable -J testbed-smoke -o /dev/null -t 1 --wrap true) || die "smoke sbatch failed (read $LOGS/slurmctld.log)"
    id=${id%%;*}
    log "smoke job $id submitted; waiting for COMPLETED in sacct"
    wait_until "smoke job $id COMPLETED in sacct" 90 "$LOGS/slurmctld.log" \
        bash -c "[[ \$(sacct -n -X -P -j $id -o State 2>/dev/null | head -n1) == COMPLETED ]]"
    echo "JOB_SMOKE=$id" >"$STATE/smoke.env"
    log "smoke job $id COMPLETED"
}

cmd_start() {
    need_root
    packages_installed || die "packages missing; run: $0 install"
    take_lock
    local t0=$SECONDS
    if all_up; then
        write_configs
        apply_slurm_conf
        log "already running (munged, mariadbd, slurmdbd, slurmctld, slurmd; node $NODE up)"
        return 0
    fi
    write_configs
    start_munge
    start_mariadb
    setup_db
    start_slurmdbd
    setup_accounts
    start_slurmctld
    apply_slurm_conf   # a slurmctld that was already up reads a changed slurm.conf
    start_slurmd
    smoke_job
    log "cluster $CLUSTER up in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- stop/reset
cancel_all_jobs() {
    slurmctld_up || return 0
    local ids
    ids=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
    if [[ -n ${ids// /} ]]; then
        log "scancel $ids"
        # shellcheck disable=SC2086
        scancel $ids 2>/dev/null || true
    fi
    local deadline=$((SECONDS + 40))
    while [[ -n $(squeue -h -t R,CG,S,CF -o %A 2>/dev/null) ]]; do
        if ((SECONDS >= deadline)); then log "warning: jobs still running/completing after 40 s"; break; fi
        sleep 0.5
    done
}

cmd_stop() {
    need_root
    take_lock
    cancel_all_jobs
    stop_daemon slurmd $RUN_SLURM/slurmd.pid 20
    local p
    for p in $(pgrep -x slurmstepd 2>/dev/null || true); do
        log "killing orphaned slurmstepd $p"; kill -KILL "$p" 2>/dev/null || true
    done
    stop_daemon slurmctld $RUN_SLURM/slurmctld.pid 30
    stop_daemon slurmdbd $RUN_SLURM/slurmdbd.pid 30
    stop_daemon mariadbd "$MYSQL_PID" 60
    stop_daemon munged "$MUNGE_PID" 10
    # the seeded scenario (running + pending jobs) is gone once jobs are cancelled
    rm -f "$SEEDED"
    log "stopped"
}

cmd_reset() {
    need_root
    cmd_stop
    log "wiping $STATE (DB, slurmctld state, slurmd spool, job outputs) and $LOGS"
    rm -rf "${STATE:?}"/* "${LOGS:?}"/*
    log "reset done; next start is fresh"
}

# ---------------------------------------------------------------- status
cmd_status() {
    local ok=0 name pidf pid
    for spec in "munged:$MUNGE_PID" "mariadbd:$MYSQL_PID" "slurmdbd:$RUN_SLURM/slurmdbd.pid" \
        "slurmctld:$RUN_SLURM/slurmctld.pid" "slurmd:$RUN_SLURM/slurmd.pid"; do
        name=${spec%%:*}; pidf=${spec#*:}
        if pid=$(daemon_pid "$name" "$pidf"); then
            printf '%-10s up (pid %s)\n' "$name" "$pid"
        else
            printf '%-10s DOWN\n' "$name"; ok=1
        fi
    done
    if ! timeout 20 sinfo 2>&1; then echo "sinfo: no answer"; ok=1; fi
    if [[ -f $SEEDED ]]; then
        if seeded_running_ok; then
            echo "seeded: yes ($SEED_ENV); JOB_RUNNING still RUNNING"
        else
            echo "seeded: yes ($SEED_ENV); but JOB_RUNNING is no longer RUNNING (ensure will re-seed)"
        fi
    else
        echo "seeded: no"
    fi
    if ((ok)); then echo "logs: $LOGS  state: $STATE"; fi
    return $ok
}

# ---------------------------------------------------------------- seed
# JOB_RUNNING from seed.env, if it is still RUNNING (it sleeps RUNNING_SECS)
seeded_running_ok() {
    local id
    id=$(sed -n 's/^JOB_RUNNING=//p' "$SEED_ENV" 2>/dev/null)
    [[ -n $id && $(squeue -h -j "$id" -o %T 2>/dev/null) == RUNNING ]]
}

# sub USER SBATCH-ARGS... : submit as USER from $JOBDIR, print the job id
sub() {
    local user=$1 out; shift
    out=$(runuser -u "$user" -- bash -c 'cd "$0" && exec sbatch --parsable -o "$0/%x-%j.out" "$@"' "$JOBDIR" "$@") \
        || die "sbatch as $user failed: $*"
    echo "${out%%;*}"
}

job_state() { squeue -h -j "$1" -o %T 2>/dev/null | head -n1; }
wait_running() {
    local id=$1 timeout=${2:-90}
    wait_until "job $id RUNNING" "$timeout" "$LOGS/slurmctld.log" \
        bash -c "[[ \$(squeue -h -j $id -o %T 2>/dev/null) == RUNNING ]]"
}

# all job ids given are accounted with a terminal state (job and step rows)
accounted_terminal() {
    local ids=$1 out line id st
    out=$(sacct -n -P -j "$ids" -o JobID,State 2>/dev/null) || return 1
    [[ -n $out ]] || return 1
    while IFS='|' read -r line st; do
        [[ -z $line ]] && continue
        [[ ${st%% *} =~ $TERMINAL_RE ]] || return 1
    done <<<"$out"
    for id in ${ids//,/ }; do
        grep -qE "^${id}([_+.]|\||$)" <<<"$(cut -d'|' -f1 <<<"$out")" || return 1
    done
    # the array must show all 4 tasks
    [[ $(grep -cE "^${JOB_ARRAY}_[0-3]\$" <<<"$(cut -d'|' -f1 <<<"$out")") -eq 4 ]]
}

cmd_seed() {
    need_root
    local force=0
    [[ ${1:-} == --force ]] && force=1
    take_lock
    all_up || die "cluster not running; run: $0 start"
    if [[ -f $SEEDED && $force -eq 0 ]]; then
        log "already seeded ($SEED_ENV); use --force to seed again"
        return 0
    fi
    if ((force)); then cancel_all_jobs; fi
    write_configs
    apply_slurm_conf
    rm -f "$SEEDED"
    local t0=$SECONDS
    SEED_START_EPOCH=$(date +%s)
    SEED_START=$(date -u -d "@$SEED_START_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
    SEED_START_LOCAL=$(date -d "@$SEED_START_EPOCH" +%Y-%m-%dT%H:%M:%S)
    local S=$SCRIPTS
    log "seeding job mix (SEED_START=$SEED_START)"

    # long pole first: 1 min limit, ends ~60-90 s later
    JOB_TIMEOUT=$(sub root -J timeout-job -t 1 --wrap 'sleep 600')

    # hetjob: never starts on one node and makes backfill plan the node; cancel after 3 s
    JOB_HET=$(sub root "$S/het.sh")
    sleep 3
    scancel "$JOB_HET" || true

    JOB_BURN=$(sub root -J cpu-burn-short -n 1 -t 5 --wrap "bash $S/burn.sh 4 2")
    JOB_ALICE=$(sub alice -J alice-normal -c 2 --mem=300M -t 5 --comment='billing test' --wrap "bash $S/burn.sh 3 3")
    JOB_WCKEY=$(sub alice -A engineering --wckey=proj-alpha -J alice-eng -t 5 --wrap "bash $S/burn.sh 2 2")
    JOB_QOS_HIGH=$(sub bob -J bob-highqos --qos=high -t 5 --wrap "bash $S/burn.sh 2 2")
    JOB_CAROL=$(sub carol -J carol-proj1 -n 2 -t 5 --wrap "srun bash $S/burn.sh 2 2")
    JOB_ARRAY=$(sub alice --array=0-3%2 "$S/array.sh")
    JOB_MULTISTEP=$(sub bob "$S/multistep.sh")
    JOB_FAILED=$(sub root -J fails-exit1 -t 5 --wrap 'sleep 2; exit 1')
    JOB_PIPE_NAME=$(sub alice -J 'pipe|name ünïcødé ✓' -t 5 --wrap "bash $S/burn.sh 1 2")
    JOB_NEWLINE_NAME="" NEWLINE_NOTE=""
    local out
    if out=$(cd "$JOBDIR" && sbatch --parsable -o "$JOBDIR/newline-%j.out" -J $'nl\nname' -t 5 --wrap 'sleep 1' 2>&1); then
        JOB_NEWLINE_NAME=${out%%;*}
    else
        NEWLINE_NOTE="sbatch rejected a job name with a newline: ${out//$'\n'/ }"
        log "note: $NEWLINE_NOTE"
    fi
    JOB_GPU=$(sub bob -p gpu --gres=gpu:1 -J gpu-job -t 5 --wrap "echo CUDA_VISIBLE_DEVICES=\$CUDA_VISIBLE_DEVICES; bash $S/burn.sh 2 3")
    JOB_OOM=$(sub carol -J oom-job --mem=50M -t 5 --wrap 'perl -e "\$x = q(a) x (400*1024*1024); sleep 30"')

    # plain srun and salloc (blocking clients, run in the background, bounded)
    runuser -u alice -- bash -c 'cd "$0" && exec timeout 180 srun -J srun-direct -n 1 -t 2 bash "$1/burn.sh" 1 1' \
        "$JOBDIR" "$S" >"$STATE/srun.out" 2>&1 9>&- &
    local srun_pid=$!
    runuser -u bob -- bash -c 'cd "$0" && exec timeout 180 salloc -J salloc-job -n 1 -t 2 srun bash "$1/burn.sh" 1 1' \
        "$JOBDIR" "$S" >"$STATE/salloc.out" 2>&1 9>&- &
    local salloc_pid=$!

    # cancelled while running
    JOB_CANCEL_RUNNING=$(sub alice -J to-cancel -t 5 --wrap 'sleep 300')
    # cancelled while held (never eligible)
    JOB_CANCEL_HELD=$(sub bob -H -J cancel-pending -t 5 --wrap 'sleep 60')
    # requeued while running
    JOB_REQUEUE=$(sub root -J requeue-me -t 5 --requeue --wrap 'sleep 12')
    # suspended 8 s, then resumed
    JOB_SUSPEND=$(sub alice -J suspend-me -t 5 --wrap "bash $S/burn.sh 2 15")

    sleep 1
    scancel "$JOB_CANCEL_HELD" || die "scancel $JOB_CANCEL_HELD failed"

    wait_running "$JOB_CANCEL_RUNNING" 90
    wait_running "$JOB_REQUEUE" 90
    wait_running "$JOB_SUSPEND" 90
    sleep 3   # let all three run a little first
    scancel "$JOB_CANCEL_RUNNING" || die "scancel $JOB_CANCEL_RUNNING failed"
    scontrol requeue "$JOB_REQUEUE" || die "scontrol requeue $JOB_REQUEUE failed"
    log "cancelled $JOB_CANCEL_RUNNING, requeued $JOB_REQUEUE (eligible again ~11 s later, AuthInfo=cred_expire=10)"
    scontrol suspend "$JOB_SUSPEND" || die "scontrol suspend $JOB_SUSPEND failed"
    log "suspended $JOB_SUSPEND for 8 s"
    sleep 8
    scontrol resume "$JOB_SUSPEND" || die "scontrol resume $JOB_SUSPEND failed"

    local rc=0
    wait "$srun_pid" || rc=$?
    ((rc == 0)) || { cat "$STATE/srun.out" >&2; die "srun job failed (rc $rc, see $STATE/srun.out)"; }
    wait "$salloc_pid" || rc=$?
    ((rc == 0)) || { cat "$STATE/salloc.out" >&2; die "salloc job failed (rc $rc, see $STATE/salloc.out)"; }
    JOB_SRUN=$(sed -n 's/^job=\([0-9]*\).*/\1/p' "$STATE/srun.out" | head -n1)
    JOB_SALLOC=$(sed -n 's/.*Granted job allocation \([0-9]*\).*/\1/p' "$STATE/salloc.out" | head -n1)
    [[ -n $JOB_SRUN && -n $JOB_SALLOC ]] || die "could not read srun/salloc job ids from $STATE/srun.out / salloc.out"

    # left RUNNING: 4 CPUs + both GPUs; then pending jobs behind it
    JOB_RUNNING=$(sub bob -p gpu --gres=gpu:2 -c 4 -J still-running -t 1-00:00:00 --wrap "sleep $RUNNING_SECS")
    wait_running "$JOB_RUNNING" 120
    JOB_PENDING_RESOURCES=$(sub alice -p gpu --gres=gpu:1 -J pending-resources -t 10 --wrap 'sleep 60')
    JOB_PENDING_BEGIN=$(sub carol -J pending-begin --begin=now+2hours -t 10 --wrap 'sleep 60')
    JOB_PENDING_HELD=$(sub root -H -J pending-held -t 10 --wrap 'sleep 60')

    local finished="$JOB_TIMEOUT,$JOB_HET,$JOB_BURN,$JOB_ALICE,$JOB_WCKEY,$JOB_QOS_HIGH,$JOB_CAROL,$JOB_ARRAY,$JOB_MULTISTEP,$JOB_FAILED,$JOB_PIPE_NAME,$JOB_GPU,$JOB_OOM,$JOB_SRUN,$JOB_SALLOC,$JOB_CANCEL_RUNNING,$JOB_CANCEL_HELD,$JOB_REQUEUE,$JOB_SUSPEND"
    [[ -n $JOB_NEWLINE_NAME ]] && finished+=",$JOB_NEWLINE_NAME"
    log "submitted everything after $((SECONDS - t0)) s; waiting (max 360 s) until jobs $finished are terminal in sacct"
    wait_until "seeded jobs accounted as terminal in sacct (see 'sacct -j $finished')" 360 "$LOGS/slurmctld.log" \
        accounted_terminal "$finished"

    local reason
    reason=$(squeue -h -j "$JOB_PENDING_RESOURCES" -o %r 2>/dev/null || true)
    [[ $(job_state "$JOB_RUNNING") == RUNNING ]] || die "job $JOB_RUNNING is no longer RUNNING"

    {
        echo "# written by testbed/slurm-testbed.sh seed — job ids of each scenario"
        echo "CLUSTER=$CLUSTER"
        echo "SLURM_VERSION=$(sinfo -V | awk '{print $2}')"
        echo "SEED_START=$SEED_START"
        echo "SEED_START_EPOCH=$SEED_START_EPOCH"
        echo "SEED_START_LOCAL=$SEED_START_LOCAL"
        echo "SEED_END=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        [[ -f $STATE/smoke.env ]] && cat "$STATE/smoke.env"
        echo "JOB_TIMEOUT=$JOB_TIMEOUT"
        echo "JOB_HET=$JOB_HET"
        echo "JOB_BURN=$JOB_BURN"
        echo "JOB_ALICE=$JOB_ALICE"
        echo "JOB_WCKEY=$JOB_WCKEY"
        echo "JOB_QOS_HIGH=$JOB_QOS_HIGH"
        echo "JOB_CAROL=$JOB_CAROL"
        echo "JOB_ARRAY=$JOB_ARRAY"
        echo "JOB_ARRAY_FAILED_TASK=3"
        echo "JOB_MULTISTEP=$JOB_MULTISTEP"
        echo "JOB_FAILED=$JOB_FAILED"
        echo "JOB_PIPE_NAME=$JOB_PIPE_NAME"
        echo "JOB_NEWLINE_NAME=$JOB_NEWLINE_NAME"
        echo "JOB_GPU=$JOB_GPU"
        echo "JOB_OOM=$JOB_OOM"
        echo "JOB_SRUN=$JOB_SRUN"
        echo "JOB_SALLOC=$JOB_SALLOC"
        echo "JOB_CANCEL_RUNNING=$JOB_CANCEL_RUNNING"
        echo "JOB_CANCEL_HELD=$JOB_CANCEL_HELD"
        echo "JOB_REQUEUE=$JOB_REQUEUE"
        echo "JOB_SUSPEND=$JOB_SUSPEND"
        echo "JOB_RUNNING=$JOB_RUNNING"
        echo "JOB_RUNNING_SECS=$RUNNING_SECS"
        echo "JOB_PENDING_RESOURCES=$JOB_PENDING_RESOURCES"
        echo "JOB_PENDING_BEGIN=$JOB_PENDING_BEGIN"
        echo "JOB_PENDING_HELD=$JOB_PENDING_HELD"
    } >"$SEED_ENV.tmp"
    mv "$SEED_ENV.tmp" "$SEED_ENV"
    date -u +%Y-%m-%dT%H:%M:%SZ >"$SEEDED"
    [[ -n $NEWLINE_NOTE ]] && log "note: $NEWLINE_NOTE"
    log "pending-resources job $JOB_PENDING_RESOURCES reason: ${reason:-?}"
    log "seeded in $((SECONDS - t0)) s; job ids in $SEED_ENV"
    cat "$SEED_ENV"
}

# ---------------------------------------------------------------- ensure
cmd_ensure() {
    local reason
    reason=$(unavailable_reason)
    if [[ -n $reason ]]; then
        echo "$reason"
        exit 2
    fi
    take_lock
    if ! packages_installed; then
        cmd_install
    fi
    cmd_start
    if [[ -f $SEEDED ]] && ! seeded_running_ok; then
        log "seeded, but JOB_RUNNING has ended (it runs ${RUNNING_SECS}s); re-seeding with --force"
        cmd_seed --force
    else
        cmd_seed
    fi
    log "ready: cluster $CLUSTER running and seeded ($SEED_ENV)"
}

# ---------------------------------------------------------------- main
usage() {
    cat >&2 <<EOF
usage: $0 {install|start|seed [--force]|status|stop|reset|ensure}
  install  apt-get the Debian 12 packages, create users alice bob carol
  start    write configs, start munged mariadbd slurmdbd slurmctld slurmd, smoke job
  seed     submit the scenario job mix, wait until accounted, write $SEED_ENV
  status   daemons + sinfo; exit 0 only if all are up
  stop     scancel all jobs, stop all daemons
  reset    stop, then wipe $STATE and $LOGS
  ensure   install/start/seed as needed; exit 2 + one-line reason if unavailable here
EOF
}

cmd=${1:-}
shift || true
case $cmd in
    install) cmd_install "$@" ;;
    start) cmd_start "$@" ;;
    seed) cmd_seed "$@" ;;
    status) cmd_status "$@" ;;
    stop) cmd_stop "$@" ;;
    reset) cmd_reset "$@" ;;
    ensure) cmd_ensure "$@" ;;
    -h | --help | help) usage ;;
    *) usage; exit 64 ;;
esac
