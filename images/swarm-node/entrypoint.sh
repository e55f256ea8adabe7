#!/bin/sh
# The node container cannot be --privileged here (the host engine lacks CAP_SYS_RESOURCE,
# which --privileged asks for), so it gets every other capability and remounts /sys,
# /proc/sys and the cgroup hierarchies read-write itself, as --privileged would have them
# (dockerd sets sysctls and makes cgroups for its containers).
set -e
mount -o remount,bind,rw /sys 2>/dev/null || true
mount -o remount,bind,rw /proc/sys 2>/dev/null || true
for dir in /sys/fs/cgroup /sys/fs/cgroup/*; do
    mount -o remount,bind,rw "$dir" 2>/dev/null || true
done
exec "$@"
