"""Simulated devices: wearables that onboard through a gateway and stream vitals."""
