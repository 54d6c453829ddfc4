"""The ledger rebuild in three parts: read.py (stored Stripe objects of a batch of customers, through the
billing repository), build.py (typed ledger rows: classified, converted, upcoming lines) and write.py (ledger
rows and snapshots). worker/rebuild.py drives them, for every customer or for the changed ones only."""
