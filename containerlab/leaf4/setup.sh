#!/bin/sh
# leaf4: kernel side (underlay, br100/vxlan100), then FRR (zebra + bgpd). Run by the node's exec line.
set -eu
sh /etc/fabric/leaf-kernel.sh 4
# FRR with the node's private /run/frr (Debian's default paths).
mkdir -p /run/frr
/usr/lib/frr/zebra -d -u root -g frrvty -A 127.0.0.1 -f /etc/frr/zebra.conf \
    -i /run/frr/zebra.pid -z /run/frr/zserv.api --vty_socket /run/frr >/run/frr/zebra.log 2>&1
i=0; while [ ! -S /run/frr/zserv.api ]; do i=$((i+1)); [ $i -lt 100 ] || { echo "zebra did not start" >&2; exit 1; }; sleep 0.1; done
/usr/lib/frr/bgpd -d -u root -g frrvty -A 127.0.0.1 -f /etc/frr/bgpd.conf -p 179 \
    -i /run/frr/bgpd.pid -z /run/frr/zserv.api --vty_socket /run/frr >/run/frr/bgpd.log 2>&1
