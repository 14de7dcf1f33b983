"""The DeNAS kopf operator."""
