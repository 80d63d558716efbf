"""The HTTP API as a new user meets it: curl's form content type on a raw image, a typo's
suggestion, interactive docs, pipelines as written, no re-run of a file that is not an image."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from web_helpers import jpeg, wait_batch

from engine import ops
from engine.web.openapi import openapi_document

pytestmark = pytest.mark.timeout(120)
CURL_FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl --data-binary declares


def test_a_raw_image_declared_as_a_form_is_processed(users):
    r = users[0].api.post("/api/v1/process", params={"pipeline": "grayscale|png"}, content=jpeg(), headers=CURL_FORM)
    assert r.status_code == 200, r.text
    got = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_UNCHANGED)
    want = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg(), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
    assert got.shape == want.shape and cv2.PSNR(got, want) > 35


def test_a_form_without_an_image_says_how_to_send_one(users):
    r = users[0].api.post("/api/v1/process", params={"pipeline": "grayscale"}, content=b"pipeline=grayscale",
                          headers=CURL_FORM)
    assert r.status_code == 415 and r.json()["code"] == "bad_image"
    assert "--data-binary" in r.json()["error"] and "-F image=@" in r.json()["error"]


def test_a_typo_gets_a_suggestion(users):
    r = users[0].api.post("/api/v1/process", params={"pipeline": "greyscale|png"}, content=jpeg())
    assert r.status_code == 422 and r.json()["code"] == "unknown_operation"
    assert "did you mean 'grayscale'?" in r.json()["error"]


def test_interactive_docs_are_served_from_the_openapi_description(web):
    import httpx

    r = httpx.get(f"{web.url}/api/v1/docs", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'data-spec="/api/v1/openapi.json"' in r.text and "/static/apidocs.js" in r.text
    assert httpx.get(f"{web.url}/static/apidocs.js", timeout=10).status_code == 200


def test_every_parameter_of_the_api_is_described():
    described = []
    for path, methods in openapi_document()["paths"].items():
        for method, op in methods.items():
            for p in op.get("parameters", []):
                assert p.get("description", "").strip(), f"{method.upper()} {path}: parameter {p['name']}"
                described.append(p["name"])
    assert {"name", "limit", "offset", "history", "job_id", "batch_id", "token_id"} <= set(described)


def test_jobs_keep_the_pipeline_as_written_and_a_non_image_is_not_rerun(users):
    alice = users[0]
    written = "resize:width=64 | png"
    r = alice.api.post("/api/v1/batches", data={"pipeline": written},
                       files=[("images", ("a.jpg", jpeg(), "image/jpeg")), ("images", ("b.jpg", b"text",
                                                                                       "image/jpeg"))])
    assert r.status_code == 202, r.text
    batch = wait_batch(alice.api, r.json()["id"])
    assert batch["pipeline"] == written
    done, failed = sorted(batch["jobs"], key=lambda j: j["status"])
    assert done["pipeline"] == written and done["canonical_pipeline"] == ops.canonical(written)
    assert done["can_rerun"] and not failed["can_rerun"] and failed["error"]["code"] == "bad_image"
    again = alice.api.post(f"/api/v1/jobs/{failed['id']}/rerun")
    assert again.status_code == 409 and "not an image" in again.json()["error"]
    assert alice.api.post(f"/api/v1/jobs/{done['id']}/rerun").status_code == 202
