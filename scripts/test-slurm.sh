#!/usr/bin/env bash
# `make test-slurm`: starts a real single-node Slurm cluster (slurmctld + slurmd + munged, as
# root, with a private configuration under a scratch folder), submits the `ci` profile of a study
# with `kdgrid slurm submit`, waits for the job arrays, and requires the tables to equal a local
# `kdgrid run`'s bit for bit. Stops the daemons it started, by their pids.
#
# usage: scripts/test-slurm.sh KDGRID [MANIFEST] [LOCAL_EXPERIMENT_DIR]
#   LOCAL_EXPERIMENT_DIR: tables of a local run of the same profile to compare with (e.g. what
#   `make check-results` trained); trained here when not given.
set -euo pipefail
KDGRID=$(realpath "${1:?usage: test-slurm.sh KDGRID [MANIFEST] [LOCAL_EXPERIMENT_DIR]}")
MANIFEST=$(realpath "${2:-experiments/default.toml}")
LOCAL=${3:-}
PROFILE=ci
CPUS=$(nproc)

skip() { echo "test-slurm: SKIPPED: $*"; exit 0; }
[[ $(id -u) == 0 ]] || skip "starting slurmctld and slurmd needs root"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "test-slurm: installing slurm-wlm and munge from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq slurm-wlm munge >/dev/null 2>&1; } \
    || skip "cannot install slurm-wlm and munge (no package source?)"
fi

WORK=$(mktemp -d /tmp/kdgrid-slurm.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK"/{munge,state,spool,results}
chmod 700 "$WORK/munge"
pids=()
cleanup() {
  local status=$?
  set +e
  local daemons=()
  for pidfile in "$WORK/slurmd.pid" "$WORK/slurmctld.pid" "$WORK/munge/munged.pid"; do
    [[ -s $pidfile ]] && daemons+=("$(cat "$pidfile")")
  done
  ((${#daemons[@]})) && kill "${daemons[@]}" 2>/dev/null
  if [[ $status != 0 ]]; then
    echo "test-slurm: FAILED; daemon logs:" >&2
    tail -n 20 "$WORK"/*.log "$WORK"/munge/*.log 2>/dev/null >&2
  fi
  # slurmctld saves its state while it shuts down: removing the folder before it has exited
  # races with those writes ("Directory not empty"), so wait up to 30 s for every daemon.
  for _ in $(seq 300); do
    local alive=0
    for pid in "${daemons[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  # Removing the scratch folder is housekeeping: it never changes the verdict.
  rm -rf "$WORK" 2>/dev/null || { sleep 1; rm -rf "$WORK" 2>/dev/null; } ||
    echo "test-slurm: could not remove $WORK (left behind)" >&2
  exit "$status"
}
trap cleanup EXIT

# munge: a private key, socket and pid file.
dd if=/dev/urandom of="$WORK/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$WORK/munge/munge.key"
munged --force --key-file="$WORK/munge/munge.key" --socket="$WORK/munge/munge.socket" \
  --pid-file="$WORK/munge/munged.pid" --log-file="$WORK/munge/munged.log" \
  --seed-file="$WORK/munge/munged.seed"

HOST=$(hostname)
export SLURM_CONF="$WORK/slurm.conf"
cat > "$SLURM_CONF" <<CONF
ClusterName=kdgrid-test
SlurmctldHost=$HOST
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
AuthInfo=socket=$WORK/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
NodeName=$HOST CPUs=$CPUS State=UNKNOWN
PartitionName=kdgrid Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -f "$SLURM_CONF" || skip "slurmctld does not start here (see above)"
slurmd -f "$SLURM_CONF" || skip "slurmd does not start here (see above)"
for _ in $(seq 60); do
  state=$(sinfo -h -o %T 2>/dev/null || true)
  [[ $state == idle* ]] && break
  sleep 1
done
[[ ${state:-} == idle* ]] || { echo "test-slurm: the node never became idle (state: ${state:-none})" >&2; exit 1; }
echo "test-slurm: cluster up ($HOST, $CPUS CPUs)"

# The local reference, unless given.
if [[ -z $LOCAL ]]; then
  "$KDGRID" --results "$WORK/local" --profile "$PROFILE" run --quiet "$MANIFEST" >/dev/null
  LOCAL=$(ls -d "$WORK"/local/*/)
fi

"$KDGRID" --results "$WORK/results" --profile "$PROFILE" slurm submit "$MANIFEST" \
  --cpus-per-task "$CPUS" --time 0:30:00
deadline=$((SECONDS + 1200))
while [[ -n $(squeue -h 2>/dev/null) ]]; do
  (( SECONDS < deadline )) || { echo "test-slurm: jobs still queued after 20 min" >&2; squeue >&2; exit 1; }
  sleep 3
done
"$KDGRID" --results "$WORK/results" --profile "$PROFILE" slurm status "$MANIFEST" \
  --threads "$CPUS" | tail -n 3
EXPERIMENT=$(basename "$LOCAL")
logs=$(find "$WORK/results/$EXPERIMENT/stages" -name 'slurm-*.log' | wc -l)
echo "test-slurm: $logs array tasks left their logs under the stage folders"
(( logs > 0 )) || { echo "test-slurm: no array task ran" >&2; exit 1; }
"$KDGRID" diff "$LOCAL" "$WORK/results/$EXPERIMENT"
echo "test-slurm: PASSED: Slurm's tables equal the local run's"
