#!/bin/sh
# leaf4: kernel side (underlay, br100/vxlan100), then FRR (zebra + bgpd). Run by the node's exec line.
set -eu
N=4
# Underlay: eth1 to the spine, the VTEP address on lo, everything else via the spine.
ip addr add 10.1.$N.2/24 dev eth1
ip link set eth1 up
ip addr add 10.0.0.$N/32 dev lo
ip route replace default via 10.1.$N.1
sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
# VNI 100: br100 with vxlan100 and the host port eth2.
ip link add vxlan100 type vxlan id 100 local 10.0.0.$N dstport 4789 nolearning
ip link set vxlan100 mtu 1500  # hosts use 1500; the 9500-byte underlay carries the VXLAN header
ip link add br100 type bridge mcast_snooping 1
ip link set vxlan100 master br100
ip link set eth2 master br100
ip link set eth2 up
ip link set vxlan100 up
ip link set br100 up
# FRR with the node's private /run/frr (Debian's default paths).
mkdir -p /run/frr
/usr/lib/frr/zebra -d -u root -g frrvty -A 127.0.0.1 -f /etc/frr/zebra.conf \
    -i /run/frr/zebra.pid -z /run/frr/zserv.api --vty_socket /run/frr >/run/frr/zebra.log 2>&1
i=0; while [ ! -S /run/frr/zserv.api ]; do i=$((i+1)); [ $i -lt 100 ] || { echo "zebra did not start" >&2; exit 1; }; sleep 0.1; done
/usr/lib/frr/bgpd -d -u root -g frrvty -A 127.0.0.1 -f /etc/frr/bgpd.conf -p 179 \
    -i /run/frr/bgpd.pid -z /run/frr/zserv.api --vty_socket /run/frr >/run/frr/bgpd.log 2>&1
