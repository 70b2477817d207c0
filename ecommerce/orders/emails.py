"""Emails about orders: owed in the transaction of the change, sent by a job.

An email is a row (``order_emails``) written in the same transaction as the change it tells of
(a payment that pays the order, a cancellation), and a job enqueued after that commit sends it.
The row makes it "never lost" (the sweeper finds it if the job is) and "never twice" (the job
claims the row before it sends; one row per order and kind).
"""

from __future__ import annotations

import html
from datetime import timedelta
from email.message import EmailMessage

from flask import current_app
from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from ecommerce.core.jobs import enqueue_after_commit
from ecommerce.core.mail import send_message
from ecommerce.core.models import dialect_insert, utcnow
from ecommerce.extensions import db
from ecommerce.orders.models import Order, OrderEmail, OrderEmailKind, OrderEmailStatus
from ecommerce.users.models import User

EMAILS = Counter("ecommerce_order_emails_total", "Order emails sent", ["kind"])
STALE_SENDING = timedelta(minutes=5)


def owe_order_email(session: Session, order_id: int, kind: OrderEmailKind) -> None:
    """Record, in the caller's transaction, that this email is owed; send it after the commit."""
    email_id = session.execute(
        dialect_insert(OrderEmail, session.get_bind().dialect.name)
        .values(
            order_id=order_id,
            kind=kind,
            status=OrderEmailStatus.PENDING,
            created_at=utcnow(),
            updated_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["order_id", "kind"])
        .returning(OrderEmail.id)
    ).scalar()
    if email_id is not None:
        enqueue_after_commit(session, "send_order_email", email_id)


def compose_order_email(order: Order, kind: OrderEmailKind) -> EmailMessage:
    """The message, in plain text and HTML: the order number, its lines, its total."""
    customer = db.session.get(User, order.user_id)
    number = f"#{order.id}"
    if kind == OrderEmailKind.CONFIRMATION:
        subject = f"Your order {number} is confirmed"
        intro = "Thank you! We have received your payment, and your order is on its way to packing."
    else:
        subject = f"Your order {number} has been cancelled"
        intro = "Your order has been cancelled. Anything you paid for it is being refunded."
    lines = [(item.product_name, item.quantity, item.price) for item in order.items]
    text_lines = "\n".join(f"  {qty} x {name} @ {price}" for name, qty, price in lines)
    text = (
        f"Hello {customer.first_name or customer.username},\n\n{intro}\n\n"
        f"Order {number}\n{text_lines}\n\nTotal: {order.total_amount}\n"
    )
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{qty}</td><td>{price}</td></tr>" for name, qty, price in lines
    )
    body = (
        f"<p>Hello {html.escape(customer.first_name or customer.username)},</p><p>{intro}</p>"
        f"<h2>Order {number}</h2><table><tr><th>Product</th><th>Quantity</th><th>Unit price</th></tr>"
        f"{rows}</table><p><strong>Total: {order.total_amount}</strong></p>"
    )
    message = EmailMessage()
    message["To"] = customer.email
    message["Subject"] = subject
    # One Message-ID per order and kind: a resend after a crash is recognisable as the same mail.
    message["Message-ID"] = f"<order-{order.id}-{kind.value}@shop.example>"
    message.set_content(text)
    message.add_alternative(body, subtype="html")
    return message


def send_order_email(email_id: int) -> None:
    """The job: send an owed email once. MailUnavailable propagates, so the job is retried.

    The row is claimed before sending (``sending``) so that two runs of the job never both
    send; a claim older than five minutes (its worker died) may be taken over.
    """
    session = db.session
    now = utcnow()
    claimed = session.execute(
        update(OrderEmail)
        .where(
            OrderEmail.id == email_id,
            (OrderEmail.status == OrderEmailStatus.PENDING)
            | (
                (OrderEmail.status == OrderEmailStatus.SENDING)
                & (OrderEmail.claimed_at < now - STALE_SENDING)
            ),
        )
        .values(
            status=OrderEmailStatus.SENDING,
            claimed_at=now,
            attempts=OrderEmail.attempts + 1,
            updated_at=now,
        )
    ).rowcount
    session.commit()
    if not claimed:
        return  # sent already, or another worker is sending it
    email = session.get(OrderEmail, email_id)
    order = session.scalar(select(Order).options(selectinload(Order.items)).where(Order.id == email.order_id))
    try:
        send_message(compose_order_email(order, email.kind))
    except Exception as exc:
        session.execute(
            update(OrderEmail)
            .where(OrderEmail.id == email_id)
            .values(status=OrderEmailStatus.PENDING, last_error=str(exc)[:255], updated_at=utcnow())
        )
        session.commit()
        raise
    session.execute(
        update(OrderEmail)
        .where(OrderEmail.id == email_id)
        .values(status=OrderEmailStatus.SENT, sent_at=utcnow(), last_error=None, updated_at=utcnow())
    )
    session.commit()
    EMAILS.labels(email.kind.value).inc()


def emails_to_retry(older_than: float | None = None) -> list[int]:
    """For the sweeper: emails still owed after ``older_than`` seconds (default
    JOB_SWEEP_AFTER_SECONDS), or stuck in sending."""
    now = utcnow()
    if older_than is None:
        older_than = current_app.config["JOB_SWEEP_AFTER_SECONDS"]
    cutoff = now - timedelta(seconds=older_than)
    ids = db.session.scalars(
        select(OrderEmail.id).where(
            ((OrderEmail.status == OrderEmailStatus.PENDING) & (OrderEmail.updated_at < cutoff))
            | (
                (OrderEmail.status == OrderEmailStatus.SENDING)
                & (OrderEmail.claimed_at < now - STALE_SENDING)
            )
        )
    ).all()
    return list(ids)
