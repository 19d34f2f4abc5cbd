"""ddff12: DDFF-12 real Lytro focal stacks, focus positions as disparities."""
