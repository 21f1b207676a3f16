"""localstripe on loopback, shaped so that the real async-stripe client can read it.

    python tests/peers/localstripe_launcher.py --port 8420 [--tag TEXT] [--pidfile FILE]

localstripe (PyPI, pinned in infra/scripts/services.sh) is a fake but stateful Stripe server.
Started through its own CLI it listens on every interface and keeps its state in a pickle file
shared by every instance on the machine. This launcher imports its application instead and,
before serving:

- binds 127.0.0.1 only;
- keeps the state in memory (each start is a clean account; a store pickled on every write also
  slows down as it grows);
- fills in what Stripe's current API answers and localstripe leaves out, where async-stripe's
  types require it (see `patch_payment_intents`, `patch_events`, `patch_declines`);
- replays answers by `Idempotency-Key` as Stripe does, which localstripe ignores;
- lets webhook endpoints come and go while an event is being delivered;
- adds `DELETE /_config/webhooks/{id}` (tests remove the endpoint they registered) and
  `GET /_config/launcher`, which answers `--tag` so a caller can tell whether the process
  listening is this launcher, and which version of it.

Everything is done by replacing attributes of localstripe's classes at start-up; its installed
files are not touched.
"""

import argparse
import hashlib
import json
import logging
import os
import sys

from aiohttp import web

from localstripe import resources, server, webhooks
from localstripe.errors import UserError
from localstripe.resources import Event, PaymentIntent, PaymentMethod, Store


def patch_store():
    """No pickle file: the state lives as long as the process."""
    Store.try_load_from_disk = lambda self: None
    Store.dump_to_disk = lambda self: None


# Stripe's test cards that decline when charged, with the decline code Stripe gives.
# https://docs.stripe.com/testing#declined-payments
DECLINE_CODES = {
    "4000000000000002": "generic_decline",
    "4000000000009995": "insufficient_funds",
    "4000000000009987": "lost_card",
    "4000000000009979": "stolen_card",
    "4000000000000341": "generic_decline",
}

# Test payment method ids of Stripe's that localstripe does not know, by card number.
EXTRA_TEST_PAYMENT_METHODS = {
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_visa_chargeDeclinedInsufficientFunds": "4000000000009995",
}


def patch_declines():
    """Declined cards decline when charged, as on Stripe.

    localstripe knows `pm_card_visa_chargeDeclined` but not `pm_card_chargeDeclined`, and
    declines 4000000000000002 only when it is attached to a customer, so a PaymentIntent
    confirmed with it succeeds. Its decline errors are `invalid_request_error`s with no
    `decline_code`; Stripe's are `card_error`s with one, and carry the PaymentIntent.
    """
    original_canonical = PaymentMethod._try_get_canonical_test_article.__func__

    def canonical(cls, id):
        number = EXTRA_TEST_PAYMENT_METHODS.get(id)
        if number is not None:
            return PaymentMethod(
                type="card",
                card=dict(number=number, exp_month="12", exp_year="2030", cvc="123"),
            )
        return original_canonical(cls, id)

    PaymentMethod._try_get_canonical_test_article = classmethod(canonical)

    original_declined = PaymentMethod._charging_is_declined

    def charging_is_declined(self):
        if self.type == "card" and self._card_number in DECLINE_CODES:
            return True
        return original_declined(self)

    PaymentMethod._charging_is_declined = charging_is_declined

    original_report_failure = PaymentIntent._report_failure

    def report_failure(self):
        try:
            original_report_failure(self)
        except UserError as e:
            error = e.body["error"]
            error["type"] = "card_error"
            decline_code = decline_code_of(self.latest_charge)
            if decline_code is not None:
                error["decline_code"] = decline_code
            error["payment_intent"] = self._export()
            raise

    PaymentIntent._report_failure = report_failure


def decline_code_of(charge):
    if charge is None or charge.failure_code != "card_declined":
        return None
    try:
        pm = PaymentMethod._api_retrieve(charge.payment_method)
    except UserError:
        return "generic_decline"
    return DECLINE_CODES.get(getattr(pm, "_card_number", None), "generic_decline")


def patch_payment_intents():
    """PaymentIntents as Stripe renders them.

    localstripe leaves out `amount_capturable`, `amount_received`, `confirmation_method` and
    `payment_method_types`, which async-stripe requires, and refuses
    `allowed_payment_method_types` and `automatic_payment_methods`; it renders `latest_charge`
    expanded (a charge object lacking fields async-stripe requires of a charge) where Stripe
    gives the id unless asked to expand it; its `last_payment_error` has no `type`, which
    async-stripe requires. Its list takes no `customer` or `created` filter and answers oldest
    first.
    """
    original_init = PaymentIntent.__init__

    def init(
        self,
        *args,
        payment_method_types=None,
        allowed_payment_method_types=None,
        automatic_payment_methods=None,
        off_session=None,
        setup_future_usage=None,
        **kwargs,
    ):
        # `off_session` (a saved card charged while its holder is away) changes nothing here:
        # localstripe's test cards never ask for the holder. Nor does `setup_future_usage`
        # (keep the card for such payments), beyond being checked and shown.
        if off_session is not None and str(off_session).lower() not in ("true", "false"):
            raise UserError(400, "Bad request")
        if setup_future_usage not in (None, "off_session", "on_session"):
            raise UserError(400, "Bad request")
        # Stripe's API of 2026-09-30, which async-stripe 1.0.0-rc.10 speaks, names the
        # PaymentIntent's payment method types `allowed_payment_method_types` when creating it.
        types = allowed_payment_method_types or payment_method_types
        if types is not None and (
            not isinstance(types, list) or not all(isinstance(t, str) for t in types)
        ):
            raise UserError(400, "Bad request")
        automatic = automatic_payment_methods
        if automatic is not None and not isinstance(automatic, dict):
            raise UserError(400, "Bad request")
        original_init(self, *args, payment_method_types=types, **kwargs)
        self.setup_future_usage = setup_future_usage
        self._payment_method_types = types or ["card"]
        self._allowed_payment_method_types = allowed_payment_method_types
        self._automatic_payment_methods = automatic_payment_methods

    PaymentIntent.__init__ = init

    original_export = PaymentIntent._export

    def export(self, expand=None):
        obj = original_export(self, expand=expand)
        charge = self.latest_charge
        expanded = any(p.split(".")[0] == "latest_charge" for p in (expand or []))
        if charge is not None and not expanded:
            obj["latest_charge"] = charge.id
        status = obj.get("status")
        obj["amount_capturable"] = self.amount if status == "requires_capture" else 0
        obj["amount_received"] = self.amount if status == "succeeded" else 0
        obj["confirmation_method"] = "automatic"
        obj["payment_method_types"] = list(getattr(self, "_payment_method_types", ["card"]))
        obj["allowed_payment_method_types"] = getattr(self, "_allowed_payment_method_types", None)
        automatic = getattr(self, "_automatic_payment_methods", None)
        if automatic is not None:
            automatic = {
                "enabled": str(automatic.get("enabled", "false")).lower() == "true",
                "allow_redirects": automatic.get("allow_redirects", "always"),
            }
        obj["automatic_payment_methods"] = automatic
        error = obj.get("last_payment_error")
        if isinstance(error, dict):
            error = dict(error)
            if error.get("code") == "payment_intent_authentication_failure":
                error.setdefault("type", "invalid_request_error")
            else:
                error.setdefault("type", "card_error")
                decline_code = decline_code_of(charge)
                if decline_code is not None:
                    error.setdefault("decline_code", decline_code)
            obj["last_payment_error"] = error
        return obj

    PaymentIntent._export = export

    list_all = resources.StripeObject._api_list_all.__func__

    def api_list_all(
        cls, url, customer=None, created=None, limit=None, starting_after=None, **kwargs
    ):
        filters = []
        if customer is not None:
            if type(customer) is not str:
                raise UserError(400, "Bad request")
            filters.append(lambda pi: pi.customer == customer)
        if created is not None:
            filters.extend(created_filters(created))
        li = list_all(cls, url, limit=limit, starting_after=starting_after, **kwargs)
        # Newest first, as Stripe lists; the store keeps insertion order, which breaks ties.
        items = [pi for pi in li._list if all(f(pi) for f in filters)]
        li._list = list(reversed(items))
        li._list.sort(key=lambda pi: pi.created, reverse=True)
        return li

    PaymentIntent._api_list_all = classmethod(api_list_all)

    original_confirm = PaymentIntent._api_confirm.__func__

    def api_confirm(cls, id, payment_method=None, **kwargs):
        # Stripe takes the card at confirmation, which is what a card form (Stripe.js) does,
        # also after an earlier card was declined; localstripe only confirms a PaymentIntent
        # created with its card.
        if payment_method is not None:
            if type(payment_method) is not str or type(id) is not str:
                raise UserError(400, "Bad request")
            obj = cls._api_retrieve(id)
            if obj.status not in ("requires_payment_method", "requires_confirmation"):
                raise UserError(400, "Bad request")
            PaymentMethod._api_retrieve(payment_method)
            obj.payment_method = payment_method
            obj.latest_charge = None
            obj.next_action = None
        return original_confirm(cls, id, **kwargs)

    PaymentIntent._api_confirm = classmethod(api_confirm)
    # localstripe registered its routes on import, holding the method it had then.
    reroute("POST", "/v1/payment_intents/{id}/confirm", PaymentIntent._api_confirm)


def reroute(method, path, func):
    """Points localstripe's route `method path` at `func`, as its own routes call theirs."""
    for route in server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        if route.method == method and info.get("formatter", info.get("path")) == path:
            route._handler = server.api_extra(func, path)
            return
    raise RuntimeError(f"localstripe has no route {method} {path}")


def created_filters(created):
    ops = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    if isinstance(created, str):
        created = {"eq": created}
    if not isinstance(created, dict):
        raise UserError(400, "Bad request")
    filters = []
    for op, value in created.items():
        try:
            bound = int(value)
        except (TypeError, ValueError):
            raise UserError(400, "Bad request")
        if op == "eq":
            filters.append(lambda obj, b=bound: obj.created == b)
        elif op in ops:
            filters.append(lambda obj, f=ops[op], b=bound: f(obj.created, b))
        else:
            raise UserError(400, "Bad request")
    return filters


def patch_events():
    """Events carry `pending_webhooks` (async-stripe's event parser requires it): the number of
    registered endpoints the event goes to, as localstripe sends each event once to each."""
    original_export = Event._export

    def export(self, expand=None):
        obj = original_export(self, expand=expand)
        obj["pending_webhooks"] = sum(
            1
            for hook in webhooks._webhooks.values()
            if hook.events is None or self.type in hook.events
        )
        obj.setdefault("request", {"id": None, "idempotency_key": None})
        return obj

    Event._export = export


class _Endpoints(dict):
    """localstripe's registered webhook endpoints, iterated over a copy: it awaits each
    delivery inside its loop over them, and an endpoint registered or removed meanwhile would
    end that loop with an error, losing the event for the endpoints not yet reached."""

    def values(self):
        return list(super().values())


def patch_webhooks():
    webhooks._webhooks = _Endpoints(webhooks._webhooks)


class Idempotency:
    """Stripe keeps the first answer to a POST with an `Idempotency-Key` (per secret key) and
    gives it again to every retry with the same parameters; the same key with other parameters
    is refused (400 `idempotency_error`), and so is a retry while the first is still running
    (409). Kept in memory for the life of the process."""

    def __init__(self):
        self.answers = {}
        self.running = set()

    @web.middleware
    async def middleware(self, request, handler):
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key or request.path.startswith("/_config/"):
            return await handler(request)
        slot = (request.headers.get("Authorization", ""), key)
        body = await request.read()
        fingerprint = hashlib.sha256(
            request.path.encode() + b"\0" + request.query_string.encode() + b"\0" + body
        ).hexdigest()
        kept = self.answers.get(slot)
        if kept is not None:
            kept_fingerprint, status, text = kept
            if kept_fingerprint != fingerprint:
                return stripe_error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                )
            response = web.Response(status=status, text=text, content_type="application/json")
            response.headers["Idempotent-Replayed"] = "true"
            return response
        if slot in self.running:
            return stripe_error(
                409,
                "idempotency_error",
                "There is currently another in-progress request using this Idempotent Key.",
            )
        self.running.add(slot)
        try:
            response = await handler(request)
            # An unauthenticated request never reached the API: nothing is kept for it.
            kept = isinstance(response, web.Response) and response.body is not None
            if response.status != 401 and kept:
                text = bytes(response.body).decode("utf-8")
                self.answers[slot] = (fingerprint, response.status, text)
            return response
        finally:
            self.running.discard(slot)


def stripe_error(status, type_, message):
    return web.Response(
        status=status,
        text=json.dumps({"error": {"type": type_, "message": message}}),
        content_type="application/json",
    )


def add_routes(app, tag):
    async def delete_webhook(request):
        webhooks._webhooks.pop(request.match_info["id"], None)
        return web.Response()

    async def launcher(request):
        return web.json_response({"launcher": tag})

    app.router.add_delete("/_config/webhooks/{id}", delete_webhook)
    app.router.add_get("/_config/launcher", launcher)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tag", default="")
    parser.add_argument("--pidfile", help="where to write this process's id")
    args = parser.parse_args(argv)

    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )

    patch_store()
    patch_declines()
    patch_payment_intents()
    patch_events()
    patch_webhooks()

    app = server.app
    # Outermost, so that it sees localstripe's error answers as answers.
    app.middlewares.insert(0, Idempotency().middleware)
    add_routes(app, args.tag)

    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.INFO)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=access, print=None)


if __name__ == "__main__":
    main()
