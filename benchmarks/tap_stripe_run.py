"""Runs singer-io's tap-stripe against a Stripe-compatible server instead of api.stripe.com.

Run it with the Python of a separate virtualenv holding tap-stripe (never the project's: it pins an old
stripe SDK), e.g.

    python3 -m venv /tmp/tap-stripe && /tmp/tap-stripe/bin/pip install tap-stripe==3.3.0
    /tmp/tap-stripe/bin/python benchmarks/tap_stripe_run.py --api-base http://127.0.0.1:PORT \
        --config config.json --catalog catalog.json > records.jsonl

tap-stripe has no setting for the API's address, so this sets the SDK's `stripe.api_base` and makes three
small patches before handing over to the tap's own main():
- its request timer reads the stream name from a URL it expects on api.stripe.com (no match elsewhere):
  replaced by a count of the requests, printed to stderr at exit;
- it checks the key with GET /v1/accounts/{id}, which the local server answers as GET /v1/account;
- its `plans` stream reads /v1/plans, the older name of the prices the local server (and our sync) lists
  under /v1/prices.
Everything else (date windows, paging, sub-streams, the schema transform, the output) is the tap's own.
benchmarks/tap_stripe_bench.py starts the server and this script and times them.
"""

from __future__ import annotations

import atexit
import sys
from typing import Any

REQUESTS = [0]


def patch(api_base: str) -> None:
    import stripe
    import tap_stripe

    stripe.api_base = api_base

    def counted(client: Any) -> None:  # instead of the tap's timer (keyed on api.stripe.com): a count
        original = client.request

        def request(*args: Any, **kwargs: Any) -> Any:
            REQUESTS[0] += 1
            return original(*args, **kwargs)

        client.request = request

    atexit.register(lambda: print(f"tap-stripe requests: {REQUESTS[0]}", file=sys.stderr))

    tap_stripe.apply_request_timer_to_client = counted
    retrieve = stripe.Account.retrieve

    def account(id: str | None = None, **params: Any) -> Any:  # noqa: A002 - the SDK's parameter name
        return retrieve(**params)  # GET /v1/account: the key's own account

    stripe.Account.retrieve = account
    stripe.Plan.class_url = classmethod(lambda cls: "/v1/prices")


def main() -> None:
    args = sys.argv[1:]
    at = args.index("--api-base")
    api_base = args[at + 1]
    del args[at : at + 2]
    patch(api_base)
    import tap_stripe

    sys.argv = [sys.argv[0], *args]
    tap_stripe.main()


if __name__ == "__main__":
    main()
