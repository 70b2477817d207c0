"""Background jobs for real: a Huey consumer process, a real SMTP server, the sandbox gateway.

The consumer is ``huey_consumer ecommerce.worker.huey -k thread -w 4`` on the test PostgreSQL and
the test Redis (the queue the test app enqueues to); the SMTP server is aiosmtpd, in this
process, on 127.0.0.1; the sandbox gateway keeps its ledger in a SQLite file both sides share.
The web side is an app instance of this process (``make_instance``), its data committed.

What must hold: a payment is charged once and has one result, whatever runs twice or dies
mid-job; a success pays the order and sends exactly one confirmation; a decline leaves the
order pending and sends nothing; a transient gateway error is retried; a consumer killed after
the charge loses nothing (the next one's startup sweep finishes the payment, without a second
charge); an email owed while the mail server is down arrives, once, when it is back; a paid
order cancelled is refunded and the customer told, once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from ecommerce import tasks
from ecommerce.core.models import utcnow
from ecommerce.extensions import db
from ecommerce.orders.models import OrderEmail, OrderEvent
from ecommerce.payments.gateway import SandboxGateway
from ecommerce.payments.models import Payment
from tests.factories import ProductFactory, UserFactory
from tests.helpers import bearer, login, run_concurrently
from tests.integration.servers import HOST, Consumer, MailServer, Received, clean_env, free_port, wait_until

SWEEP_AFTER_SECONDS = 2
JOB_TIMEOUT = 20  # seconds a job (with its retries) may take before a test gives up on it


@pytest.fixture(scope="module")
def mail_server() -> Iterator[MailServer]:
    server = MailServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp(mail_server: MailServer) -> MailServer:
    if not mail_server.running:  # a test that stopped it failed before starting it again
        mail_server.start()
    return mail_server


@pytest.fixture(scope="module")
def gateway_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sandbox") / "gateway.db"


@pytest.fixture(scope="module")
def worker(app: Flask, mail_server: MailServer, gateway_path: Path, tmp_path_factory) -> Iterator[Consumer]:
    logs = tmp_path_factory.mktemp("consumer")
    env = clean_env(
        DATABASE_URL=app.config["SQLALCHEMY_DATABASE_URI"],
        REDIS_URL=app.config["REDIS_URL"],
        MAIL_SERVER=HOST,
        MAIL_PORT=str(mail_server.port),
        SANDBOX_GATEWAY_PATH=str(gateway_path),
        JOB_SWEEP_AFTER_SECONDS=str(SWEEP_AFTER_SECONDS),
        LOG_LEVEL="INFO",
        LOG_JSON="false",
        INSTANCE_PATH=str(logs / "instance"),
    )
    consumer = Consumer(env, logs)
    try:
        yield consumer
    finally:
        consumer.stop()


@pytest.fixture
def consumer(worker: Consumer) -> Consumer:
    """The module's consumer, started if it is not running (first use, or killed by a test)."""
    if not worker.alive:
        worker.start()
    return worker


# -- the web side ---------------------------------------------------------------------------


class Shop:
    """An app instance of this process (the web side) and one customer of it."""

    def __init__(self, web: Flask, gateway_path: Path) -> None:
        self.web = web
        self.gateway = SandboxGateway(gateway_path)
        self.client = web.test_client()
        with web.app_context():
            customer = UserFactory()
            self.user_id, self.email, username = customer.id, customer.email, customer.username
        self.headers = bearer(login(self.client, username)["access_token"])

    def order(self, lines=((Decimal("19.99"), 2),)) -> dict:
        with self.web.app_context():
            products = [(ProductFactory(price=price).id, quantity) for price, quantity in lines]
        for product_id, quantity in products:
            added = self.client.post(
                "/api/cart/items/",
                json={"product_id": product_id, "quantity": quantity},
                headers=self.headers,
            )
            assert added.status_code in (200, 201), added.get_json()
        placed = self.client.post("/api/orders/", json={}, headers=self.headers)
        assert placed.status_code == 201, placed.get_json()
        return placed.get_json()

    def pay(self, order_id: int, token: str, method: str = "card") -> dict:
        response = self.client.post(
            f"/api/orders/{order_id}/payments/",
            json={"payment_method": method, "token": token},
            headers=self.headers,
        )
        assert response.status_code == 202, response.get_json()
        assert response.get_json()["status"] == "pending"
        return response.get_json()

    def payment(self, payment_id: int) -> dict:
        response = self.client.get(f"/api/payments/{payment_id}/", headers=self.headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def order_detail(self, order_id: int) -> dict:
        response = self.client.get(f"/api/orders/{order_id}/", headers=self.headers)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def wait_for_payment(self, payment_id: int, status: str, timeout: float = JOB_TIMEOUT) -> dict:
        return wait_until(
            lambda: (p := self.payment(payment_id))["status"] == status and p,
            timeout,
            message=f"payment {payment_id} to be {status}",
        )

    def payment_row(self, payment_id: int) -> Payment:
        with self.web.app_context():
            return db.session.get(Payment, payment_id)

    def emails_owed(self, order_id: int) -> list[OrderEmail]:
        with self.web.app_context():
            return list(
                db.session.scalars(
                    select(OrderEmail).where(OrderEmail.order_id == order_id).order_by(OrderEmail.id)
                )
            )

    def events(self, order_id: int) -> list[tuple[str | None, str, str | None]]:
        """The order's history: (from status, to status, payment status) per event."""
        with self.web.app_context():
            rows = db.session.scalars(
                select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)
            )
            return [
                (
                    e.from_status and e.from_status.value,
                    e.to_status.value,
                    e.payment_status and e.payment_status.value,
                )
                for e in rows
            ]

    def charges(self, idempotency_key: str) -> list[dict]:
        return [c for c in self.gateway.ledger() if c["idempotency_key"] == idempotency_key]


@pytest.fixture
def shop(make_instance, smtp: MailServer, consumer: Consumer, gateway_path: Path) -> Shop:
    web = make_instance(SANDBOX_GATEWAY_PATH=str(gateway_path), MAIL_SERVER=HOST, MAIL_PORT=smtp.port)
    return Shop(web, gateway_path)


def _subject(received: Received) -> str:
    return str(received.message["Subject"])


def _wait_for_mail(smtp: MailServer, address: str, count: int = 1, timeout: float = JOB_TIMEOUT):
    return wait_until(
        lambda: len(smtp.to(address)) >= count and smtp.to(address),
        timeout,
        message=f"{count} email(s) to {address}",
    )


def _assert_paid(shop: Shop, order: dict, payment: dict) -> None:
    """The payment succeeded once, its order is paid by the system, one confirmation is owed."""
    detail = shop.order_detail(order["id"])
    assert detail["order_status"] == "paid"
    assert [(p["id"], p["status"]) for p in detail["payments"] if p["status"] == "succeeded"] == [
        (payment["id"], "succeeded")
    ]
    paid = [e for e in detail["events"] if e["to_status"] == "paid"]
    assert [(e["from_status"], e["actor_id"]) for e in paid] == [("pending", None)]
    history = shop.events(order["id"])
    assert history[0] == (None, "pending", None)
    assert history[-1] == ("pending", "paid", "succeeded")  # paid once, by the payment
    assert [event for event in history if event[1] == "paid"] == [history[-1]]
    assert history[-2] == ("pending", "pending", "pending")  # the payment asked for
    row = shop.payment_row(payment["id"])
    (charge,) = shop.charges(row.idempotency_key)
    assert charge["approved"] == 1 and charge["transaction_id"] == row.transaction_id
    assert Decimal(charge["amount"]) == Decimal(order["total_amount"])


def _assert_one_confirmation(smtp: MailServer, shop: Shop, order: dict) -> Received:
    (received,) = _wait_for_mail(smtp, shop.email)
    assert received.rcpt_tos == [shop.email]
    assert "no-reply@shop.example" in received.mail_from
    assert f"#{order['id']}" in _subject(received) and "confirmed" in _subject(received)
    (owed,) = shop.emails_owed(order["id"])
    wait_until(lambda: shop.emails_owed(order["id"])[0].status.value == "sent", 5, message="the email sent")
    assert owed.kind.value == "order_confirmation"
    return received


def _assert_text_and_html(message: EmailMessage, *needles: str) -> None:
    assert message.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    for needle in needles:
        assert needle in parts["text/plain"], parts["text/plain"]
        assert needle in parts["text/html"], parts["text/html"]


def _stays(predicate, seconds: float, message: str) -> None:
    """Poll for ``seconds``: ``predicate`` must hold every time."""
    try:
        failed = wait_until(lambda: not predicate(), seconds, message=message)
    except AssertionError:
        return  # it held throughout
    raise AssertionError(f"no longer true: {message} ({failed})")


# -- the tests ------------------------------------------------------------------------------


def test_a_payment_pays_the_order_and_sends_one_confirmation(shop, smtp, consumer):
    order = shop.order([(Decimal("19.99"), 2), (Decimal("5.25"), 1)])
    assert order["total_amount"] == "45.23"
    payment = shop.pay(order["id"], "tok_visa")

    done = shop.wait_for_payment(payment["id"], "succeeded")
    assert done["amount"] == "45.23" and done["failure_reason"] is None
    _assert_paid(shop, order, payment)
    received = _assert_one_confirmation(smtp, shop, order)
    _assert_text_and_html(received.message, f"#{order['id']}", "45.23")
    text = received.message.get_body(("plain",)).get_content()
    assert "2 x" in text and "Total: 45.23" in text
    assert received.message["Message-ID"] == f"<order-{order['id']}-order_confirmation@shop.example>"


def test_a_declined_payment_leaves_the_order_pending_then_another_succeeds(shop, smtp, consumer):
    order = shop.order()
    declined = shop.pay(order["id"], "tok_decline_x")

    failed = shop.wait_for_payment(declined["id"], "failed")
    assert failed["failure_reason"] == "card_declined"
    detail = shop.order_detail(order["id"])
    assert detail["order_status"] == "pending"
    assert shop.events(order["id"]) == [
        (None, "pending", None),
        ("pending", "pending", "pending"),
        ("pending", "pending", "failed"),  # the order did not move; its payment did
    ]
    # The result and the email it would owe are one transaction: no email is owed, none sent.
    assert shop.emails_owed(order["id"]) == [] and smtp.to(shop.email) == []
    (charge,) = shop.charges(shop.payment_row(declined["id"]).idempotency_key)
    assert charge["approved"] == 0 and charge["transaction_id"] is None

    second = shop.pay(order["id"], "tok_visa")
    shop.wait_for_payment(second["id"], "succeeded")
    _assert_paid(shop, order, second)
    assert shop.payment(declined["id"])["status"] == "failed"
    received = _assert_one_confirmation(smtp, shop, order)
    _assert_text_and_html(received.message, f"#{order['id']}", order["total_amount"])


def test_a_transient_gateway_error_is_retried(shop, smtp, consumer):
    mark = consumer.mark()
    order = shop.order()
    payment = shop.pay(order["id"], "tok_flaky_x")

    shop.wait_for_payment(payment["id"], "succeeded")
    _assert_paid(shop, order, payment)
    row = shop.payment_row(payment["id"])
    assert row.attempts == 2  # the transient failure, then the retry
    assert len(shop.charges(row.idempotency_key)) == 1
    log = consumer.since(mark)
    assert "WARNING" in log and "Retrying: TransientGatewayError" in log, log
    assert re.search(r"Requeueing [0-9a-f-]{36}, 7 retries", log), log
    assert "Traceback" not in log, log
    _assert_one_confirmation(smtp, shop, order)


def test_a_consumer_killed_after_the_charge_loses_nothing_and_charges_once(shop, smtp, consumer):
    order = shop.order()
    payment = shop.pay(order["id"], "tok_slow_4000")
    key = shop.payment_row(payment["id"]).idempotency_key

    # The sandbox has charged; its answer is 4 s away. The worker dies now.
    wait_until(lambda: shop.charges(key), 10, interval=0.02, message="the charge in the ledger")
    assert consumer.kill() == -9
    assert shop.payment(payment["id"])["status"] == "pending"
    assert shop.order_detail(order["id"])["order_status"] == "pending"
    assert len(shop.charges(key)) == 1

    # The next consumer's startup sweep takes payments pending longer than the sweep delay.
    wait_until(
        lambda: (
            utcnow() - shop.payment_row(payment["id"]).updated_at
            > timedelta(seconds=SWEEP_AFTER_SECONDS + 0.5)
        ),
        10,
        message="the payment to be older than the sweep delay",
    )
    consumer.start()
    shop.wait_for_payment(payment["id"], "succeeded")
    assert "sweep re-enqueued {'payments': 1" in consumer.log(), consumer.log()

    _assert_paid(shop, order, payment)  # exactly one charge under the payment's key
    # The killed run, then the sweep's (the startup sweep and the first periodic one may both
    # hand it over: two runs at once, still one charge and one result).
    assert shop.payment_row(payment["id"]).attempts >= 2
    _assert_one_confirmation(smtp, shop, order)


def test_an_email_owed_while_the_mail_server_is_down_arrives_once_it_is_back(shop, smtp, consumer):
    mark = consumer.mark()
    smtp.stop()
    order = shop.order()
    payment = shop.pay(order["id"], "tok_visa")

    shop.wait_for_payment(payment["id"], "succeeded")
    _assert_paid(shop, order, payment)

    def failed_twice() -> bool:
        owed = shop.emails_owed(order["id"])
        return bool(owed) and owed[0].status.value == "pending" and owed[0].attempts >= 2

    # Retried while the server is down (two attempts at least), never delivered.
    wait_until(failed_twice, JOB_TIMEOUT, message="two failed attempts to send the email")
    (owed,) = shop.emails_owed(order["id"])
    assert owed.last_error and owed.sent_at is None
    assert smtp.to(shop.email) == []
    assert "Retrying: MailUnavailable" in consumer.since(mark)

    smtp.start()
    received = _assert_one_confirmation(smtp, shop, order)
    _assert_text_and_html(received.message, f"#{order['id']}", order["total_amount"])
    (sent,) = shop.emails_owed(order["id"])
    assert sent.status.value == "sent" and sent.last_error is None and sent.attempts >= 3

    # More jobs for the same email (a late retry, a sweep) send nothing more.
    sends = consumer.completed("send_order_email", mark)
    for _ in range(2):
        tasks.send_order_email(sent.id)
    wait_until(
        lambda: len(consumer.completed("send_order_email", mark) - sends) >= 2,
        10,
        message="the duplicate email jobs to run",
    )
    _stays(lambda: len(smtp.to(shop.email)) == 1, 3, "exactly one email delivered")
    assert shop.emails_owed(order["id"])[0].attempts == sent.attempts


def test_cancelling_a_paid_order_refunds_it_and_sends_one_cancellation(shop, smtp, consumer):
    order = shop.order()
    payment = shop.pay(order["id"], "tok_visa")
    shop.wait_for_payment(payment["id"], "succeeded")
    _assert_one_confirmation(smtp, shop, order)

    cancelled = shop.client.post(f"/api/orders/{order['id']}/cancel/", headers=shop.headers)
    assert cancelled.status_code == 200, cancelled.get_json()
    assert cancelled.get_json()["order_status"] == "cancelled"

    shop.wait_for_payment(payment["id"], "refunded")
    row = shop.payment_row(payment["id"])
    (charge,) = shop.charges(row.idempotency_key)
    assert charge["refund_id"] and charge["refund_id"] == row.refund_id

    mails = _wait_for_mail(smtp, shop.email, count=2)
    cancellations = [m for m in mails if "cancelled" in _subject(m)]
    assert len(cancellations) == 1 and len(mails) == 2
    _assert_text_and_html(cancellations[0].message, f"#{order['id']}", order["total_amount"])
    kinds = sorted(e.kind.value for e in shop.emails_owed(order["id"]))
    assert kinds == ["order_cancelled", "order_confirmation"]
    wait_until(
        lambda: all(e.status.value == "sent" for e in shop.emails_owed(order["id"])), 5, message="both sent"
    )

    # A second refund job changes nothing: one refund, the same id.
    mark = consumer.mark()
    tasks.refund_payment(payment["id"])
    wait_until(lambda: consumer.completed("refund_payment", mark), 10, message="the duplicate refund job")
    assert shop.charges(row.idempotency_key)[0]["refund_id"] == row.refund_id
    assert shop.payment(payment["id"])["status"] == "refunded"
    assert len(smtp.to(shop.email)) == 2


def test_an_order_cancelled_while_its_payment_is_in_flight_stays_cancelled_and_is_refunded(
    shop, smtp, consumer
):
    order = shop.order()
    payment = shop.pay(order["id"], "tok_slow_2000")
    key = shop.payment_row(payment["id"]).idempotency_key
    wait_until(lambda: shop.charges(key), 10, interval=0.02, message="the charge in the ledger")

    # Charged, the answer not yet back: the customer cancels the (still pending) order.
    cancelled = shop.client.post(f"/api/orders/{order['id']}/cancel/", headers=shop.headers)
    assert cancelled.status_code == 200, cancelled.get_json()

    shop.wait_for_payment(payment["id"], "refunded")
    assert shop.order_detail(order["id"])["order_status"] == "cancelled"
    assert shop.events(order["id"]) == [
        (None, "pending", None),
        ("pending", "pending", "pending"),
        ("pending", "cancelled", "pending"),  # cancelled while the charge was in flight
        ("cancelled", "cancelled", "succeeded"),  # the charge came back: a refund is due
        ("cancelled", "cancelled", "refunded"),
    ]
    (charge,) = shop.charges(key)
    assert charge["refund_id"] and charge["refund_id"] == shop.payment_row(payment["id"]).refund_id
    # Told of the cancellation only: the order was never confirmed.
    (received,) = _wait_for_mail(smtp, shop.email)
    assert "cancelled" in _subject(received)
    assert [e.kind.value for e in shop.emails_owed(order["id"])] == ["order_cancelled"]


def test_duplicate_payment_jobs_charge_once_and_record_one_result(shop, smtp, consumer):
    mark = consumer.mark()
    order = shop.order()
    # Slow enough that the duplicates run while the first charge is on its way.
    payment = shop.pay(order["id"], "tok_slow_1000")
    run_concurrently([lambda: tasks.process_payment(payment["id"])] * 5)

    wait_until(
        lambda: len(consumer.completed("process_payment", mark)) >= 6,
        JOB_TIMEOUT,
        message="the six payment jobs to run",
    )
    assert shop.payment(payment["id"])["status"] == "succeeded"
    _assert_paid(shop, order, payment)  # one charge, one transaction id, one move to paid
    assert shop.payment_row(payment["id"]).attempts >= 2  # some duplicates did overlap the first
    assert "Traceback" not in consumer.since(mark), consumer.since(mark)
    _assert_one_confirmation(smtp, shop, order)
    _stays(lambda: len(smtp.to(shop.email)) == 1, 1, "exactly one email delivered")
