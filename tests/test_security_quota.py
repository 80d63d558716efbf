"""Per-client quotas: a client over its limit gets ERROR quota (QuotaError), others are served."""
from faults_helpers import start

from engine.errors import QuotaError


def test_client_over_its_rate_quota_is_refused_while_others_are_served(secure_factory, jpegs):
    cluster = secure_factory(local_workers=2, extra=["--client-rate", "0.5", "--client-burst", "3"]).start_broker()
    photo = jpegs["coins.jpg"]
    with cluster.client("alice") as alice, cluster.client("bob") as bob:
        flood = [alice.submit(photo, "grayscale") for _ in range(10)]
        fair = [bob.submit(photo, "grayscale") for _ in range(3)]
        outcomes = [f.exception(60) for f in flood]
        assert all(f.result(60).width == 384 for f in fair)
        info = bob.info()
    refused = [e for e in outcomes if e is not None]
    assert all(isinstance(e, QuotaError) and "alice" in e.message and "--client-rate" in e.message for e in refused)
    assert 10 - len(refused) in (3, 4)  # the burst, plus at most one token earned while sending
    assert info["identities"]["alice"]["refused"] == len(refused)
    assert info["identities"]["bob"] == {"in_flight": 0, "received": 3, "refused": 0}
    assert info["quota"] == len(refused)


def test_client_over_its_in_flight_quota_is_refused_while_others_are_served(cluster_factory, jpegs):
    """Without CURVE a client is its routing id: the quota still holds one client back."""
    cluster = start(cluster_factory, (2,), extra=["--client-max-in-flight", "2"])
    photo = jpegs["coins.jpg"]
    with cluster.client() as greedy, cluster.client() as other:  # sleep: a worker-only test op, checked by the broker
        slow = [greedy.submit(photo, "sleep:ms=1500|grayscale") for _ in range(4)]
        quick = other.submit(photo, "grayscale")
        assert quick.result(60).width == 384
        outcomes = [f.exception(60) for f in slow]
    assert [e is None for e in outcomes] == [True, True, False, False]
    assert all(isinstance(e, QuotaError) and "--client-max-in-flight" in e.message for e in outcomes[2:])
