#!/bin/bash
# A/B of Fast DDS's message cap (an experiment, not part of the package). Run as root from the
# repository root; it re-runs itself inside a new network namespace whose only interface is
# loopback, so that nothing can leave the machine whatever the discovery range:
#   A: the mandated environment: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, the launch profile
#      (rmw_fastrtps then adds its own default shared-memory and UDPv4 transports to the
#      profile's, and UDPv4's 65,500-byte maxMessageSize caps every message)
#   B: ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT (rmw leaves the profile alone) and
#      shm_only_4mib.xml (shared memory only: no UDP, no socket, frames in one piece)
# usage: ab.sh fragments | threads | bench [ROUNDS]
set -u
if [ "${WAM_AB_ISOLATED:-}" != 1 ]; then
  exec unshare -n env WAM_AB_ISOLATED=1 bash "$0" "$@"
fi
ip link set lo up
[ "$(ip -o link show | wc -l)" = 1 ] || { echo "not isolated"; exit 1; }
here=$(dirname "$(readlink -f "$0")")
results=$(dirname "$here")
py=.venv/bin/python
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
use() {
  if [ "$1" = A ]; then
    export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
    export FASTDDS_DEFAULT_PROFILES_FILE=$PWD/wam_ros/config/fastdds.xml  # what launch applies
  else
    export ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT
    export FASTDDS_DEFAULT_PROFILES_FILE=$results/2026-12-06-camera-leg/shm_only_4mib.xml
  fi
}
case "$1" in
  fragments)  # the subscriber's wake-ups per message, by message size
    frag=$results/2026-12-06-camera-leg/fragments.py
    for v in A B; do for rows in 30 480 960; do
      use $v; export ROS_DOMAIN_ID=125
      echo "$v rows=$rows ($((rows * 640 * 3)) bytes)"
      $py "$frag" sub 12 "$rows" & sub=$!
      sleep 1.5; $py "$frag" pub 11 "$rows"; wait $sub
    done; done ;;
  threads)  # thread_cpu.py over the launched graph
    for v in A B; do
      use $v; export ROS_DOMAIN_ID=102
      echo "== $v $(date -u +%H:%M:%S)"
      $py "$results/2026-12-06-camera-leg/thread_cpu.py" --window 15 | head -14
    done ;;
  bench)  # the pipeline bench, A and B alternating
    for i in $(seq "${2:-2}"); do for v in A B; do
      use $v; export ROS_DOMAIN_ID=101
      echo "== $v$i $(date -u +%H:%M:%S)"
      .venv/bin/wam-ros bench pipeline --robot cobot_magic \
        --checkpoint wam_ros/checkpoints/cobot_magic --backend torch --schedulers async \
        --duration 60 --graph cameras,launched --cameras robot --driver-priority 0 --rounds 1 \
        --json "ab-$v$i.json" > "ab-$v$i.log" 2>&1
      echo "rc=$?"
    done; done ;;
  *) echo "usage: $0 fragments | threads | bench [ROUNDS]"; exit 2 ;;
esac
