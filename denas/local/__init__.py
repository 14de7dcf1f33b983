"""The local executor: a DeNASJob run as processes on this machine (no cluster needed)."""
