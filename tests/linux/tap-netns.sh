#!/usr/bin/env bash
# Makes TAP devices in the network namespace it runs in, then execs a command there (the engine): the
# Linux network tests run it under `unshare --net`, so the TAPs, their addresses and the engine's
# traffic stay in a namespace of the test's own and vanish with it. It refuses to run in any namespace
# but a fresh one (whose only interface is lo), so it never changes the host's network.
# Usage: tests/linux/tap-netns.sh NAME[+mq]=ADDRESS/PREFIX... -- COMMAND [ARG]...   (+mq: a multiqueue TAP)
set -euo pipefail
interfaces=$(ip -o link show | awk -F": " '{ print $2 }')
if [ "$interfaces" != lo ]; then
  echo "tap-netns: not a fresh network namespace (interfaces: $(echo $interfaces)); run me under 'unshare --net'" >&2
  exit 1
fi
ip link set lo up
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  name=${1%%=*} address=${1#*=} flags=()
  case $name in *+mq) name=${name%+mq} flags=(multi_queue) ;; esac
  ip tuntap add dev "$name" mode tap "${flags[@]}"
  ip addr add "$address" dev "$name"
  ip link set "$name" up
  shift
done
[ $# -gt 1 ] || { echo "usage: $0 NAME[+mq]=ADDRESS/PREFIX... -- COMMAND [ARG]..." >&2; exit 2; }
shift
exec "$@"
