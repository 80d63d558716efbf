"""The gateway checks pipelines against what the broker's workers declared, not against its
own copy of the engine: real broker, a worker started --no-learned, the gateway on uvicorn."""
import asyncio
import json
import re

import httpx
import pytest
from cluster_helpers import FAST_HEARTBEAT_S, Cluster
from web_helpers import User, WebServer, jpeg

from engine import ops
from engine import pipeline_syntax as syntax
from engine.errors import PipelineError, UnknownOperation
from engine.web import WebSettings
from engine.web.link import EngineLink
from engine.web.schema import RECHECK_AFTER_S, UNSURE_FRESH_S, WorkerSchema

pytestmark = pytest.mark.timeout(90)

LEARNED = {name for name, op in ops.REGISTRY.items() if op.learned}  # faces, anonymize, background
OPS_SCRIPT = re.compile(r'<script type="application/json" id="ops">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A gateway in front of a broker whose only worker runs without the learned models,
    and a user on it."""
    cluster = Cluster(local_workers=0)
    web = user = None
    try:
        cluster.start_broker(wait_slots=0)
        cluster.add_worker(1, "--no-learned")
        cluster.wait_ready(2)
        web = WebServer(tmp_path_factory.mktemp("web-plain"), cluster.front).start()
        user = User(web, "gina")
        yield web, user
    finally:
        if user is not None:
            user.close()
        if web is not None:
            web.stop()
        cluster.stop()


def test_a_pipeline_no_worker_offers_is_refused_before_anything_is_stored(plain):
    web, user = plain
    image = [("images", ("a.jpg", jpeg(), "image/jpeg"))]
    answers = [user.api.post("/api/v1/process", params={"pipeline": "faces|json"}, content=jpeg()),
               user.api.post("/api/v1/process", params={"pipeline": "faces", "history": "false"}, content=jpeg()),
               user.api.post("/api/v1/batches", data={"pipeline": "anonymize"}, files=image)]
    for r in answers:
        assert r.status_code == 422 and r.json()["code"] == "unknown_operation", r.text
        assert "unknown operation" in r.json()["error"] and "grayscale" in r.json()["error"]  # what is offered
    page = user.browser.post("/upload", data={"pipeline": "background", "csrf": user.csrf}, files=image)
    assert page.status_code == 422 and "unknown operation" in page.text
    assert user.api.get("/api/v1/jobs").json()["total"] == 0
    assert not [f for f in (web.settings.data_dir / "images").rglob("*") if f.is_file()]


def test_operations_and_the_upload_form_list_only_what_the_workers_offer(plain):
    web, user = plain
    listed = httpx.get(f"{web.url}/api/v1/operations", timeout=30).json()
    assert listed["source"] == "workers" and "note" not in listed
    assert set(listed["operations"]) == set(ops.describe()) - LEARNED
    form = OPS_SCRIPT.search(user.browser.get("/upload").text)
    assert form and set(json.loads(form.group(1))) == set(listed["operations"])


def test_an_offered_pipeline_runs_and_its_canonical_text_is_the_registrys(plain):
    web, user = plain
    pipeline = "resize:width=64|text:text=Hi%2C there|png"
    r = user.api.post("/api/v1/process", params={"pipeline": pipeline}, content=jpeg())
    assert r.status_code == 200, r.text
    assert json.loads(r.headers["x-engine-meta"])["width"] == 64
    job = user.api.get(f"/api/v1/jobs/{r.headers['x-job-id']}").json()
    assert job["pipeline"] == pipeline and job["canonical_pipeline"] == ops.canonical(pipeline)
    # What the gateway sends the engine: the canonical text from the workers' declarations.
    declared = httpx.get(f"{web.url}/api/v1/operations", timeout=30).json()["operations"]
    for text in (pipeline, "edge:low=50|jpeg:quality=80", "grayscale"):
        assert syntax.canonical(syntax.check(text, declared)) == ops.canonical(text)


def test_without_declared_operations_only_the_syntax_is_checked_and_a_joining_worker_counts(
        cluster_factory, tmp_path):
    cluster = cluster_factory(local_workers=0).start_broker(wait_slots=0)

    async def scenario() -> None:
        settings = WebSettings(broker=cluster.front, data_dir=tmp_path, heartbeat_interval_s=FAST_HEARTBEAT_S,
                               broker_check_timeout_s=2.0)
        link = EngineLink(settings)
        await link.start()
        try:
            schema = WorkerSchema(link, fresh_s=60.0)  # only the recheck can see a worker join
            listing = await schema.listing()
            assert listing["source"] == "local" and "no connected worker" in listing["note"]
            assert await schema.check(" greyscale ") == "greyscale"  # no worker yet: the broker decides
            with pytest.raises(PipelineError, match="empty step"):
                await schema.check("grayscale||png")
            cluster.add_worker(1, "--no-learned")
            await asyncio.to_thread(cluster.wait_ready, 2)
            await asyncio.sleep(UNSURE_FRESH_S)
            with pytest.raises(UnknownOperation, match="did you mean 'grayscale'"):
                await schema.check("greyscale")
            with pytest.raises(UnknownOperation, match="'faces'"):
                await schema.check("faces|json")
            cluster.add_worker(1)  # with the learned models
            await asyncio.to_thread(cluster.wait_ready, 4)
            await asyncio.sleep(RECHECK_AFTER_S)
            assert await schema.check("faces|json") == ops.canonical("faces|json")
        finally:
            await link.close()

    asyncio.run(asyncio.wait_for(scenario(), 80))


def test_with_workers_of_two_engine_versions_the_gateway_leaves_what_they_declare_differently_to_the_broker():
    from engine.web.schema import offer_of

    declared = {"resize": ops.describe()["resize"], "grayscale": ops.describe()["grayscale"]}
    offer = offer_of({"ops": declared, "ops_differ": ["resize"]}, 0.0)
    assert offer.schema == declared and "resize" in offer.note  # listed, with a note
    assert WorkerSchema._checked(None, "resize:width=8,fancy=2", offer) == "resize:width=8,fancy=2"
    with pytest.raises(PipelineError, match="sparkle"):  # declared alike everywhere: checked here
        WorkerSchema._checked(None, "grayscale:sparkle=1", offer)
    single = offer_of({"ops": declared, "ops_differ": []}, 0.0)
    with pytest.raises(PipelineError, match="fancy"):  # one version: checked here
        WorkerSchema._checked(None, "resize:width=8,fancy=2", single)
