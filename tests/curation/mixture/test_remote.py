"""A mixture built to s3:// (moto's S3 server on the loopback interface, reached with s3fs):
uploaded manifest last, read back whole, its exports read straight from the bucket."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from curation.mixture import build_mixture
from curation.mixture import exports as ex
from curation.mixture.remote import MARKER, download_mixture, remote_entries
from curation.sources.paths import SourceRejected
from tests.curation.mixture.test_exports import BATCH, CMP, SEQ, scan_and_plan, streaming_env
from tests.s3 import BUCKET, serve
from training.data import open_mixture


@pytest.fixture(scope="module")
def s3():
    yield from serve()


@pytest.fixture(scope="module")
def remote(s3, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("remote"))
    source, plan = scan_and_plan(root)
    url = f"s3://{BUCKET}/mixes/m1"
    options = dict(
        allowed_roots=[root, f"s3://{BUCKET}/mixes"], allowed_protocols={"file", "s3"},
        plots=False, shard_batches=3, exports=["bin", "datatrove", "mds"],
    )  # fmt: skip
    result = build_mixture(source, [CMP], plan, url, staging_dir=f"{root}/staging", **options)
    return root, source, plan, url, options, result


def test_mixture_and_exports_on_s3_read_back_in_order(s3, remote):
    import fsspec

    root, _, _, url, _, result = remote
    fs = fsspec.filesystem("s3")
    assert not fs.exists(f"{url}/{MARKER}")
    manifest = json.loads(fs.cat_file(f"{url}/manifest.json"))
    assert manifest == json.loads(json.dumps(result["manifest"]))
    assert manifest["order"] == "fixed"
    assert sorted(manifest["exports"]) == ["bin", "datatrove", "mds"]
    assert result["audit"]["passed"]
    # read back from the bucket: the whole mixture, then each export with its own reader
    local = download_mixture(url, f"{root}/downloaded")
    expected = open_mixture(f"{root}/staging")
    got = open_mixture(local)
    n = expected.n_batches * expected.seqs_per_batch
    np.testing.assert_array_equal(got.sequences(0, n), expected.sequences(0, n))
    flat = expected.sequences(0, n).reshape(-1)
    for name, entry in manifest["exports"].items():
        for f in entry["files"]:
            assert fs.info(f"{url}/{f['path']}")["size"] == f["bytes"], (name, f)
    stream = []
    for f in manifest["exports"]["bin"]["files"]:
        data = fs.cat_file(f"{url}/{f['path']}")
        header = np.frombuffer(data[:1024], dtype="<i4")
        assert header[0] == ex.BIN_MAGIC
        stream.append(np.frombuffer(data[1024:], dtype="<u2"))
    np.testing.assert_array_equal(np.concatenate(stream), flat)

    from datatrove.utils.dataset import DatatroveFolderDataset

    ds = DatatroveFolderDataset(f"{url}/exports/datatrove", seq_len=SEQ - 1, token_size=2)
    assert len(ds) == n
    for i in (0, n // 3, n - 1):
        np.testing.assert_array_equal(ds[i]["input_ids"].numpy(), expected.sequences(i, i + 1)[0])


def test_streaming_dataset_reads_the_mds_export_from_s3(s3, remote, tmp_path):
    root, _, _, url, _, _ = remote
    env = streaming_env(tmp_path, S3_ENDPOINT_URL=s3)
    expected = open_mixture(f"{root}/staging")
    n = expected.n_batches * expected.seqs_per_batch
    np.save(tmp_path / "expected.npy", expected.sequences(0, n))
    script = textwrap.dedent(
        f"""
        import numpy as np
        from streaming import StreamingDataset
        ds = StreamingDataset(remote={url + "/exports/mds"!r}, local={str(tmp_path / "cache")!r},
                              shuffle=False, batch_size={BATCH // SEQ})
        got = np.stack([sample["input_ids"] for sample in ds])
        np.testing.assert_array_equal(got, np.load({str(tmp_path / "expected.npy")!r}))
        print("ok", len(got))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240,
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["ok", str(n)]


def test_a_finished_prefix_is_returned_as_it_is_and_others_are_refused(s3, remote):
    import fsspec

    root, source, plan, url, options, result = remote
    shutil.rmtree(f"{root}/staging")  # nothing to rebuild from: the bucket's copy is used
    again = build_mixture(source, [CMP], plan, url, staging_dir=f"{root}/staging2", **options)
    assert again["manifest"] == json.loads(json.dumps(result["manifest"]))
    assert not os.path.exists(f"{root}/staging2")

    fs = fsspec.filesystem("s3")
    fs.pipe_file(f"s3://{BUCKET}/mixes/other/notes.txt", b"someone's data")
    with pytest.raises(SourceRejected, match="not empty"):
        build_mixture(
            source, [CMP], plan, f"s3://{BUCKET}/mixes/other", staging_dir=f"{root}/s3", **options
        )
    assert remote_entries(f"s3://{BUCKET}/mixes/other") == ["notes.txt"]
    with pytest.raises(SourceRejected, match="outside the allowed roots"):
        build_mixture(
            source, [CMP], plan, f"s3://{BUCKET}/elsewhere", staging_dir=f"{root}/s4", **options
        )
    with pytest.raises(SourceRejected, match="not allowed"):
        build_mixture(
            source, [CMP], plan, f"gs://{BUCKET}/mixes/m2", staging_dir=f"{root}/s5", **options
        )
    with pytest.raises(ValueError, match="staging_dir"):
        build_mixture(source, [CMP], plan, f"s3://{BUCKET}/mixes/m3", **options)


def test_an_interrupted_upload_is_resumed_and_committed_by_its_manifest(s3, remote, monkeypatch):
    import fsspec

    from curation.mixture import remote as remote_module

    root, source, plan, _, options, _ = remote
    url = f"s3://{BUCKET}/mixes/m4"
    real = remote_module.upload_mixture

    def dies_halfway(local_dir, target):
        fs = fsspec.filesystem("s3")
        first = sorted(n for n in os.listdir(local_dir) if n.endswith(".bin"))[0]
        fs.put_file(f"{local_dir}/{first}", f"{target}/{first}")
        raise ConnectionError("the network went away")

    monkeypatch.setattr(remote_module, "upload_mixture", dies_halfway)
    with pytest.raises(ConnectionError):
        build_mixture(source, [CMP], plan, url, staging_dir=f"{root}/s6", **options)
    fs = fsspec.filesystem("s3")
    assert not fs.exists(f"{url}/manifest.json") and fs.exists(f"{url}/{MARKER}")
    with pytest.raises(FileNotFoundError, match="finished mixture"):
        download_mixture(url, f"{root}/d6")
    monkeypatch.setattr(remote_module, "upload_mixture", real)
    result = build_mixture(source, [CMP], plan, url, staging_dir=f"{root}/s6", **options)
    assert fs.exists(f"{url}/manifest.json") and not fs.exists(f"{url}/{MARKER}")
    assert result["manifest"]["exports"]
