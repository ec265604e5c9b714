#!/usr/bin/env bash
# Removes network namespaces (and the router daemons inside them) left by a test run that was
# killed before it could clean up (SIGKILL skips destructors). Test namespaces are named
# mlbrs-<pid>-...; only those whose test process is gone are removed.
set -euo pipefail

for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^mlbrs-' || true); do
  pid=${ns#mlbrs-}
  pid=${pid%%-*}
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    continue
  fi
  for leftover in $(ip netns pids "$ns" 2>/dev/null || true); do
    kill -9 "$leftover" 2>/dev/null || true
  done
  ip netns delete "$ns" 2>/dev/null || true
done

# Test nodes (tests/src/kube_node.rs) of killed runs: their containers live in their own network
# namespaces, so the loop above does not reach them. Each node's cgroup root is /mlbrs-<pid>-<n>
# in every hierarchy and its directory /tmp/metallb-node-mlbrs-<pid>-<n>-*; only those whose
# test process is gone are touched.
stale_pid() {
  local pid=${1#mlbrs-}
  pid=${pid%%-*}
  [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null
}
for cgroup in /sys/fs/cgroup/*/mlbrs-*; do
  [ -d "$cgroup" ] && stale_pid "$(basename "$cgroup")" || continue
  for attempt in 1 2 3 4 5; do
    pids=$(find "$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null || true)
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
    sleep 0.2
  done
  # Children before parents: a cgroup directory goes only when empty.
  find "$cgroup" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done
for dir in /tmp/metallb-node-mlbrs-*; do
  [ -d "$dir" ] && stale_pid "${dir#/tmp/metallb-node-}" || continue
  # Shims name the node's containerd socket, which is inside the directory.
  for pid in $(grep -lsF "$dir/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    kill -9 "$pid" 2>/dev/null || true
  done
  awk -v dir="$dir" 'index($5, dir) == 1 { print length($5), $5 }' /proc/self/mountinfo |
    sort -rn | cut -d' ' -f2- | while read -r mount_point; do
      umount --lazy "$mount_point" 2>/dev/null || true
    done
  rm -rf "$dir"
done
