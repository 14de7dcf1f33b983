"""DeNASCampaign: one DeNASJob template searched on several hardware targets x budgets.

`spec` (validation, matrix -> cells -> child jobs), `summary` (the status), `report` (the
comparison), `local` (`denas run campaign.yaml`).  No torch, no kopf at import time.
"""
