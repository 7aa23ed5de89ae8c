#!/bin/sh
# The kernel side every leaf shares (agent or FRR): the underlay toward the spine, the VTEP
# address, and VNI 100 as br100 with vxlan100 and the host port eth2. Usage: leaf-kernel.sh N
set -eu
N=$1
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
