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
