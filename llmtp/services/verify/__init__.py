"""Proof that MTP is on and faster: the A/B, its arms, tuning, baselines and the live check."""
