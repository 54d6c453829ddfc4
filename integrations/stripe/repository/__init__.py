"""Every read of the stored Stripe tables, one module per concern.

Steps and commands never write SQL against `stripe_*` tables themselves: they call a function here, which
returns plain typed rows. Keeping the queries in one place means an index, a column rename or a batching
change (the scale work reads per batch of customers) is made once, and each query is tested on SQLite and
PostgreSQL.
"""
