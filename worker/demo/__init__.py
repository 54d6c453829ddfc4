"""Stand-ins for the demo and tests: generated sample company, local Stripe-compatible server, builders.

They are imported only by `retention demo` and the tests, never by production code. Keeping them out of
`integrations/` means production packages hold production code only, and no other command pays for importing
the sample generator or the local server.
"""
