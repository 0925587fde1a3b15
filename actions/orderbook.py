"""Demo order backend: a CSV of orders. A shop plugs its order API in behind ``lookup``."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

_ORDER_NUMBER = re.compile(r"\b(?:AC[-\s]?)?(\d{5,8})\b", re.IGNORECASE)


def normalise_order_number(text: str) -> str | None:
    """'ac10452', 'AC-10452', 'order 10452' -> 'AC-10452'; None when there is no number."""
    match = _ORDER_NUMBER.search(text)
    return f"AC-{match[1]}" if match else None


@dataclass(frozen=True)
class Order:
    number: str
    status: str
    carrier: str
    tracking: str
    eta: str


class OrderBook:
    def __init__(self, orders: dict[str, Order]) -> None:
        self._orders = orders

    @classmethod
    def from_csv(cls, path: Path) -> OrderBook:
        if not path.exists():
            return cls({})
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        orders = {}
        for row in rows:
            number = normalise_order_number(row.get("order_number", ""))
            if number:
                orders[number] = Order(
                    number,
                    row.get("status", ""),
                    row.get("carrier", ""),
                    row.get("tracking", ""),
                    row.get("eta", ""),
                )
        return cls(orders)

    def lookup(self, number: str) -> Order | None:
        return self._orders.get(number)


def describe(order: Order) -> str:
    status = order.status.strip().lower()
    if status == "shipped":
        return (
            f"Order {order.number} has shipped with {order.carrier} (tracking "
            f"{order.tracking}) and should arrive by {order.eta}."
        )
    if status == "delivered":
        return f"Order {order.number} was delivered on {order.eta}."
    return f"Order {order.number} is {status or 'being processed'}; expected delivery {order.eta}."
