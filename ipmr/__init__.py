"""Edge multicast through the kernel IPMR engine (VIFs, MFC, IGMP/MLD)."""
