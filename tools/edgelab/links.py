"""What a link is: bandwidth, latency, jitter, loss; and the profiles the scenarios use.

Figures are what ``ping`` across the link should see: ``delay_ms`` is added to the round
trip, ``jitter_ms`` is how far a round trip may stray from it (uniform per direction,
half each way), ``loss_pct`` is the share of round trips lost (each direction drops
``1 - sqrt(1 - loss)``, about half). ``rate_mbit`` caps each direction (``tbf``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkSpec:
    rate_mbit: float | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    name: str = "lan"

    @property
    def needs_shim(self) -> bool:
        """Delay, jitter and loss need the userspace delay line (no netem in this kernel)."""
        return bool(self.delay_ms or self.jitter_ms or self.loss_pct)

    @property
    def loss_per_direction_pct(self) -> float:
        return 100 * (1 - (1 - self.loss_pct / 100) ** 0.5)

    def describe(self) -> str:
        if not self.needs_shim and not self.rate_mbit:
            return f"{self.name}: unshaped veth"
        rate = f"{self.rate_mbit:g} Mbit/s" if self.rate_mbit else "no rate cap"
        return (f"{self.name}: {rate}, +{self.delay_ms:g} ms +- {self.jitter_ms:g} ms round trip, "
                f"{self.loss_pct:g} % loss")


PROFILES = {
    "lan": LinkSpec(),
    "wifi": LinkSpec(rate_mbit=50, delay_ms=20, jitter_ms=5, loss_pct=1, name="wifi"),
    "4g": LinkSpec(rate_mbit=10, delay_ms=60, jitter_ms=20, loss_pct=2, name="4g"),
}
