#!/bin/sh
# leaf3: kernel side (underlay, br100/vxlan100), before the agent starts.
# Run by the node's first exec line; the second starts the agent.
set -eu
sh /etc/fabric/leaf-kernel.sh 3
