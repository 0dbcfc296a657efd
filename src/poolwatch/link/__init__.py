"""Linking: from an address, a port and a time to the subscriber and entity behind them.

Loaders turn ISP records (registry, static assignments, RADIUS accounting, DHCP leases,
CGNAT port blocks, meter readings) into ``model`` rows; ``resolve`` answers
"who held IP:port at t?" for many observations at once. Nothing here knows about packets.
"""
