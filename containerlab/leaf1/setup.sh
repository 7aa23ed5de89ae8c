#!/bin/sh
# leaf1: kernel side (underlay, br100/vxlan100), before the agent starts.
# Run by the node's first exec line; the second starts the agent.
set -eu
sh /etc/fabric/leaf-kernel.sh 1
# The routed edge port with the multicast source behind it, and br100 as VNI 100's SVI.
ip addr add 10.50.0.1/24 dev eth3
ip link set eth3 up
ip addr add 192.168.100.254/24 dev br100
sysctl -qw net.ipv4.ip_forward=1
