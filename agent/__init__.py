"""Leaf agent: the membership store, the daemon, config, events and the evpnctl CLI."""
