"""BGP EVPN side: pure codecs for EVPN routes and ExaBGP JSON, and the ExaBGP launcher."""
