#!/bin/sh
# spine (eth1-4: leaves, eth5: the injector): underlay addresses and forwarding, then FRR (zebra + staticd). Run by the node's exec line.
set -eu
for N in 1 2 3 4 5; do
    ip addr add 10.1.$N.1/24 dev eth$N
    ip link set eth$N up
done
sysctl -qw net.ipv4.ip_forward=1
# FRR with the node's private /run/frr (Debian's default paths).
mkdir -p /run/frr
/usr/lib/frr/zebra -d -u root -g frrvty -A 127.0.0.1 -f /etc/frr/zebra.conf \
    -i /run/frr/zebra.pid -z /run/frr/zserv.api --vty_socket /run/frr >/run/frr/zebra.log 2>&1
i=0; while [ ! -S /run/frr/zserv.api ]; do i=$((i+1)); [ $i -lt 100 ] || { echo "zebra did not start" >&2; exit 1; }; sleep 0.1; done
/usr/lib/frr/staticd -d -u root -g frrvty -A 127.0.0.1 -f /etc/frr/staticd.conf \
    -i /run/frr/staticd.pid -z /run/frr/zserv.api --vty_socket /run/frr >/run/frr/staticd.log 2>&1
