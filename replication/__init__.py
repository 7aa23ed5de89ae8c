"""VXLAN head-end replication programmed over netlink (flood lists, per-group lists)."""
