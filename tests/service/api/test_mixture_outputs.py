"""Mixture outputs over HTTP: `output.exports` writes the trainers' files, and an s3:// output
(moto's S3 server on the loopback interface) is checked at create time and uploaded by the
build job, manifest last."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from curation.mixture import exports as ex
from service.cli.embedded import refresh_settings
from service.settings import get_settings
from service.worker import runner
from tests.s3 import BUCKET, serve
from tests.service.api.test_mixtures import body, scanned  # noqa: F401  (fixture)
from tests.service.conftest import auth
from training.data import open_mixture

ROOT = f"s3://{BUCKET}/mixes"


@pytest.fixture(scope="module")
def s3():
    yield from serve()


@pytest.fixture
def on_s3(s3: str, env: pytest.MonkeyPatch, corpora_root: Path) -> str:
    env.setenv("SKILLMIX_ALLOWED_ROOTS", f"{corpora_root},{ROOT}")
    env.setenv("SKILLMIX_ALLOWED_PROTOCOLS", "file,s3")
    refresh_settings()
    return s3


def dose(scanned: dict) -> dict:  # noqa: F811
    return {scanned["skill"]["id"]: {"target": {"per_batch": 2}, "source": "synthesize"}}


def test_exports_are_written_beside_a_local_mixture(
    client: TestClient,
    key_a: str,
    scanned: dict,  # noqa: F811
) -> None:
    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    r = client.post(
        "/v1/mixtures",
        headers=auth(key_a),
        json=body(scanned, plan=dose(scanned), output={"exports": ["bin", "datatrove"]}),
    )
    assert r.status_code == 202, r.text
    assert r.json()["output"]["exports"] == ["bin", "datatrove"]
    assert runner.execute(r.json()["job"]["id"]) == "succeeded"
    done = client.get(f"/v1/mixtures/{r.json()['id']}", headers=auth(key_a)).json()
    manifest, out = done["manifest"], Path(done["output"]["uri"])
    assert manifest["order"] == "fixed" and sorted(manifest["exports"]) == ["bin", "datatrove"]
    mixture = open_mixture(out)
    n = mixture.n_batches * mixture.seqs_per_batch
    stream = np.concatenate([ex.read_bin(str(p)) for p in sorted(out.glob("exports/bin/*.bin"))])
    np.testing.assert_array_equal(stream.reshape(n, -1), mixture.sequences(0, n))
    bad = client.post(
        "/v1/mixtures",
        headers=auth(key_a),
        json=body(scanned, plan=dose(scanned), output={"exports": ["tfrecord"]}),
    )
    assert bad.status_code == 422 and "exports" in bad.text


def test_a_mixture_built_to_s3_is_uploaded_manifest_last(
    client: TestClient,
    key_a: str,
    scanned: dict,  # noqa: F811
    on_s3: str,
) -> None:
    import fsspec

    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    url = f"{ROOT}/api-1"
    r = client.post(
        "/v1/mixtures",
        headers=auth(key_a),
        json=body(scanned, plan=dose(scanned), output={"uri": url, "exports": ["mds"]}),
    )
    assert r.status_code == 202, r.text
    mixture = r.json()
    assert mixture["output"] == {"uri": url, "format": "jsonl.gz", "exports": ["mds"]}
    # claimed before it is written: the same prefix, one inside it, one around it
    for taken in (url, f"{url}/inner", ROOT):
        again = client.post(
            "/v1/mixtures", headers=auth(key_a), json=body(scanned, output={"uri": taken})
        )
        assert again.status_code == 409 and again.json()["type"].endswith("output-claimed")
    assert runner.execute(mixture["job"]["id"]) == "succeeded"
    done = client.get(f"/v1/mixtures/{mixture['id']}", headers=auth(key_a)).json()
    assert done["audit"]["passed"] and list(done["manifest"]["exports"]) == ["mds"]
    fs = fsspec.filesystem("s3")
    stored = json.loads(fs.cat_file(f"{url}/manifest.json"))
    assert stored == done["manifest"]
    for entry in [*stored["shards"], *stored["exports"]["mds"]["files"]]:
        assert fs.exists(f"{url}/{entry['path']}"), entry["path"]
    assert not fs.exists(f"{url}/.build")
    # the local staging copy is gone once uploaded
    assert not (get_settings().work_dir / mixture["job"]["id"] / "mixture").exists()
    # verifications train from local folders: a clear 422 for an object-storage mixture
    r = client.post(
        "/v1/verifications",
        headers=auth(key_a),
        json={"arms": {"upweighted": mixture["id"], "baseline": "auto"},
              "skill_ids": [scanned["skill"]["id"]], "sizes": ["nano"], "seeds": [0]},
    )  # fmt: skip
    assert r.status_code == 422 and r.json()["type"].endswith("mixture-remote"), r.text


def test_object_storage_outputs_are_checked_at_create_time(
    client: TestClient,
    key_a: str,
    scanned: dict,  # noqa: F811
    on_s3: str,
) -> None:
    import fsspec

    assert runner.execute(scanned["scan"]["job"]["id"]) == "succeeded"
    fs = fsspec.filesystem("s3")
    fs.pipe_file(f"{ROOT}/used/data.txt", b"someone's")
    cases = {
        f"{ROOT}/used": (409, "output-exists"),
        f"s3://{BUCKET}/elsewhere/m": (422, "source-rejected"),
        f"gs://{BUCKET}/mixes/m": (422, "source-rejected"),
        f"{ROOT}/../escape": (422, "source-rejected"),
    }
    for uri, (status, kind) in cases.items():
        r = client.post(
            "/v1/mixtures", headers=auth(key_a), json=body(scanned, output={"uri": uri})
        )
        assert r.status_code == status and r.json()["type"].endswith(kind), (uri, r.text)
