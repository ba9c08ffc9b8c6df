"""The ground floor: what every layer may use and that imports nothing of runner's above it (safe files)."""
