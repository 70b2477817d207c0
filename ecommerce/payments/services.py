"""Payments: requested by the customer, processed by a background job, refunded on cancel.

Delivery guarantees (docs/asynchronous_processing.md):

- A payment row and its job: the job is enqueued after the payment's transaction commits (never
  for a rolled-back payment). If the enqueue fails, or a worker dies mid-job, the payment stays
  ``pending`` and the sweeper enqueues it again.
- The job is idempotent. The gateway charges at most once per payment (our ``idempotency_key``
  goes with every attempt), and the result is recorded only while the payment is still
  ``pending``, under its row lock. Run twice, or by two workers at once, a payment is charged
  once and has one result.
- Success moves the order from ``pending`` to ``paid`` in the transaction that records the
  payment, and owes the customer a confirmation email in that same transaction.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask import current_app
from prometheus_client import Counter
from sqlalchemy import select, update

from ecommerce.core.db.session import conflict_on_duplicate, locked
from ecommerce.core.idempotency import record_response
from ecommerce.core.jobs import enqueue_after_commit
from ecommerce.core.models import utcnow
from ecommerce.errors import Conflict, NotFound
from ecommerce.extensions import db
from ecommerce.orders.emails import owe_order_email
from ecommerce.orders.models import Order, OrderEmailKind, OrderStatus
from ecommerce.orders.services import move_order, record_payment_event
from ecommerce.payments.gateway import ChargeResult, gateway
from ecommerce.payments.models import Payment, PaymentStatus
from ecommerce.users.models import Role, User

PAYMENTS = Counter("ecommerce_payments_total", "Payments by outcome", ["status"])
ALREADY_PAYING = "This order already has a payment pending or succeeded."


def create_payment(actor: User, order_id: int, data: dict[str, Any]) -> Payment:
    """Start paying for one's own pending order; a worker does the charging."""
    session = db.session
    order = session.scalar(
        locked(select(Order).where(Order.id == order_id, Order.user_id == actor.id), key_share=True)
    )
    if order is None:
        raise NotFound("No such order.")
    if order.order_status != OrderStatus.PENDING:
        raise Conflict(f"Only a pending order can be paid; this one is {order.order_status.value}.")
    active = session.scalar(
        select(Payment.id).where(
            Payment.order_id == order.id,
            Payment.status.in_([PaymentStatus.PENDING, PaymentStatus.SUCCEEDED]),
        )
    )
    if active is not None:
        raise Conflict(ALREADY_PAYING)
    payment = Payment(
        order_id=order.id,
        payment_method=data["payment_method"],
        amount=order.total_amount,
        status=PaymentStatus.PENDING,
        idempotency_key=uuid.uuid4().hex,
        token=data["token"],
    )
    session.add(payment)
    with conflict_on_duplicate(ALREADY_PAYING):  # the partial unique index: a racing request won
        session.flush()
    record_payment_event(order, PaymentStatus.PENDING, f"payment {payment.id} asked for")
    enqueue_after_commit(session, "process_payment", payment.id)
    record_response(session, payment)
    session.commit()
    PAYMENTS.labels(PaymentStatus.PENDING.value).inc()
    return payment


def get_payment(actor: User, payment_id: int) -> Payment:
    statement = select(Payment).where(Payment.id == payment_id)
    if actor.role != Role.ADMIN:
        statement = statement.join(Order, Order.id == Payment.order_id).where(Order.user_id == actor.id)
    payment = db.session.scalar(statement)
    if payment is None:
        raise NotFound("No such payment.")
    return payment


def process_payment(payment_id: int) -> None:
    """The job: charge through the gateway (at most once per payment), then record the result.

    A transient gateway error propagates, so the job is retried with backoff.
    """
    session = db.session
    payment = session.get(Payment, payment_id)
    if payment is None or payment.status != PaymentStatus.PENDING:
        return
    session.execute(update(Payment).where(Payment.id == payment_id).values(attempts=Payment.attempts + 1))
    session.commit()
    result = gateway().charge(payment.idempotency_key, payment.amount, payment.token)
    record_payment_result(payment_id, result)


def record_payment_result(payment_id: int, result: ChargeResult) -> None:
    """Record the gateway's answer once; a success pays the order in the same transaction."""
    session = db.session
    payment = session.scalar(
        locked(select(Payment).where(Payment.id == payment_id), of=Payment, key_share=True)
    )
    if payment is None or payment.status != PaymentStatus.PENDING:
        return  # another run of this job recorded it already (the job's end rolls back)
    if not result.approved:
        payment.status = PaymentStatus.FAILED
        payment.failure_reason = result.decline_reason or "declined"
        record_payment_event(
            _lock_order(payment.order_id), PaymentStatus.FAILED, f"payment {payment.id} failed"
        )
        session.commit()
        PAYMENTS.labels(PaymentStatus.FAILED.value).inc()
        return
    payment.status = PaymentStatus.SUCCEEDED
    payment.transaction_id = result.transaction_id
    order = _lock_order(payment.order_id)
    if order.order_status == OrderStatus.PENDING:
        move_order(order, OrderStatus.PAID, None, f"payment {payment.id} succeeded", PaymentStatus.SUCCEEDED)
        owe_order_email(session, order.id, OrderEmailKind.CONFIRMATION)
    else:
        # The order was cancelled while its payment was in flight: the money goes back.
        record_payment_event(order, PaymentStatus.SUCCEEDED, f"payment {payment.id} succeeded; refund due")
        enqueue_after_commit(session, "refund_payment", payment.id)
    session.commit()
    PAYMENTS.labels(PaymentStatus.SUCCEEDED.value).inc()


def _lock_order(order_id: int) -> Order:
    """The order, locked until the commit (after the payment's lock, as everywhere here).

    Every writer of an order's events holds this lock until it commits, so an order's event ids
    are committed in order, and a stream that has sent event N never meets a smaller id later.
    """
    return db.session.scalar(locked(select(Order).where(Order.id == order_id), of=Order, key_share=True))


def refund_payment(payment_id: int) -> None:
    """The job: refund a succeeded payment of a cancelled order (at most once), then record it."""
    session = db.session
    payment = session.get(Payment, payment_id)
    if (
        payment is None
        or payment.status != PaymentStatus.SUCCEEDED
        or payment.order.order_status != OrderStatus.CANCELLED
    ):
        return
    refund_id = gateway().refund(payment.idempotency_key)
    refunded = session.execute(
        update(Payment)
        .where(Payment.id == payment_id, Payment.status == PaymentStatus.SUCCEEDED)
        .values(status=PaymentStatus.REFUNDED, refund_id=refund_id, updated_at=utcnow())
    ).rowcount
    if refunded:
        record_payment_event(
            _lock_order(payment.order_id), PaymentStatus.REFUNDED, f"payment {payment_id} refunded"
        )
    session.commit()
    if refunded:
        PAYMENTS.labels(PaymentStatus.REFUNDED.value).inc()


def payments_to_retry(older_than: float | None = None) -> tuple[list[int], list[int]]:
    """For the sweeper: (pending payments, succeeded payments of cancelled orders) that have
    been waiting longer than ``older_than`` seconds (default JOB_SWEEP_AFTER_SECONDS)."""
    if older_than is None:
        older_than = current_app.config["JOB_SWEEP_AFTER_SECONDS"]
    cutoff = utcnow() - timedelta(seconds=older_than)
    pending = db.session.scalars(
        select(Payment.id).where(Payment.status == PaymentStatus.PENDING, Payment.updated_at < cutoff)
    ).all()
    refunds = db.session.scalars(
        select(Payment.id)
        .join(Order, Order.id == Payment.order_id)
        .where(
            Payment.status == PaymentStatus.SUCCEEDED,
            Order.order_status == OrderStatus.CANCELLED,
            Payment.updated_at < cutoff,
        )
    ).all()
    return list(pending), list(refunds)
