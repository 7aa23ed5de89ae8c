#!/bin/sh
# inj: underlay link to the spine and its own loopback; the injector itself starts next.
set -eu
ip addr add 10.1.5.2/24 dev eth1
ip link set eth1 up
ip addr add 10.0.0.5/32 dev lo
ip route replace default via 10.1.5.1
