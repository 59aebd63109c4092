"""Exports read back with each consumer's own reader equal the mixture, sequence by sequence,
in MixtureReader's order (datatrove's DatatroveFolderDataset, mosaicml-streaming's
StreamingDataset, numpy.memmap for the .bin files, Hugging Face datasets for the text)."""

import glob
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from curation.corpus import CorpusSource
from curation.mixture import DosingPlan, build_mixture, plan_mixture
from curation.mixture import exports as ex
from curation.mixture.format import EOS
from curation.scan import run_scan
from curation.skills.probes import sample_instances
from curation.skills.spec import SkillSpec
from curation.synthetic_corpus import Plant, generate_corpus
from tests.conftest import missing, need_module
from training.data import open_mixture

BATCH, SEQ = 2048, 64
CMP = SkillSpec.model_validate(
    {"id": "cmp", "name": "comparison", "detector": {"kind": "builtin"},
     "generator": {"family": "number_comparison"}}
)  # fmt: skip
MDS_LIMIT = 20_000
"""Small MDS shards (about 150 sequences each), so that the export has several."""


def streaming_env(tmp_path, **extra):
    """The environment of a process that imports mosaicml-streaming, installed apart
    (`make install` puts it in .venv/mds-reader; docs/exports.md says why: its pins, numpy
    < 2.2 and xxhash < 4, cannot join this project's lock)."""
    default = os.path.join(os.path.dirname(sys.executable), os.pardir, "mds-reader")
    path = os.path.normpath(os.environ.get("SKILLMIX_MDS_READER", default))
    if not os.path.isdir(os.path.join(path, "streaming")):
        missing(f"mosaicml-streaming is not installed at {path} (`make install` puts it there)")
    # streaming's package __init__ imports its vision datasets, which import torchvision
    # (not installed here, and not used by the MDS reader): an empty stand-in for it.
    stubs = tmp_path / "stubs" / "torchvision"
    (stubs / "transforms").mkdir(parents=True)
    (stubs / "__init__.py").write_text("")
    (stubs / "datasets.py").write_text("class VisionDataset: ...\n\n\nclass CIFAR10: ...\n")
    (stubs / "transforms" / "__init__.py").write_text("")
    (stubs / "transforms" / "functional.py").write_text("def to_tensor(x): ...\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([path, str(tmp_path / "stubs")]), **extra}


def scan_and_plan(root, **dose):
    plants = [Plant("cmp", tuple(i.text for i in sample_instances(CMP, 8, seed=5)), every=4)]
    corpus = generate_corpus(
        f"{root}/corpus", 300, plants, seed=3, format="jsonl", n_files=2, mean_chars=400
    )
    source = CorpusSource(corpus.uri, corpus.format, id_key="id")
    report = run_scan(
        source, [CMP], f"{root}/scan", allowed_roots=[root], batch_tokens=BATCH, plots=False
    )
    dosing = DosingPlan(
        batch_tokens=BATCH, seq_len=SEQ, skills={"cmp": {"target": {"per_batch": 2}}}
    )
    return source, plan_mixture(report, [CMP], dosing)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("exports"))
    source, plan = scan_and_plan(root)
    out = f"{root}/mix"
    patch = pytest.MonkeyPatch()
    patch.setattr(ex, "MDS_SIZE_LIMIT", MDS_LIMIT)
    try:
        result = build_mixture(
            source, [CMP], plan, out, allowed_roots=[root], plots=False, shard_batches=3,
            exports=["bin", "mds", "datatrove"],
        )  # fmt: skip
    finally:
        patch.undo()
    reader = open_mixture(out)
    expected = reader.sequences(0, reader.n_batches * reader.seqs_per_batch)
    return root, source, plan, out, result["manifest"], expected


def test_manifest_records_fixed_order_and_each_exports_files(built):
    _, _, _, out, manifest, expected = built
    assert manifest["order"] == "fixed"
    assert sorted(manifest["exports"]) == ["bin", "datatrove", "mds"]
    assert len([s for s in manifest["shards"] if s["kind"] == "tokens"]) > 1
    on_disk = json.loads(Path(f"{out}/manifest.json").read_text())
    assert on_disk["exports"] == manifest["exports"]
    for name, entry in manifest["exports"].items():
        assert entry["order"] == "fixed" and entry["sequences"] == len(expected)
        listed = {f["path"] for f in entry["files"]}
        found = {
            os.path.relpath(p, out)
            for p in glob.glob(f"{out}/exports/{name}/**", recursive=True)
            if os.path.isfile(p)
        }
        assert listed == found and listed
        for f in entry["files"]:
            assert ex._sha256(f"{out}/{f['path']}") == f["sha256"]
    assert not glob.glob(f"{out}/exports/*.tmp")


def test_bin_export_reads_back_with_numpy_memmap_in_order(built):
    _, _, _, out, manifest, expected = built
    files = sorted(glob.glob(f"{out}/exports/bin/tokens-*.bin"))
    assert len(files) == len([s for s in manifest["shards"] if s["kind"] == "tokens"])
    parts, first_batch = [], 0
    for path in files:
        header = np.fromfile(path, dtype="<i4", count=256)
        assert header[0] == 20240520 and header[1] == 1  # llm.c: magic, version 1 = uint16
        assert (header[3], header[4], header[5]) == (SEQ, BATCH // SEQ, first_batch)
        tokens = np.memmap(path, dtype="<u2", mode="r", offset=1024, shape=(int(header[2]),))
        assert os.path.getsize(path) == 1024 + 2 * int(header[2])
        parts.append(np.asarray(tokens))
        first_batch += int(header[6]) // (BATCH // SEQ)
        np.testing.assert_array_equal(ex.read_bin(path), tokens)
    stream = np.concatenate(parts)
    np.testing.assert_array_equal(stream.reshape(-1, SEQ), expected)
    # nanoGPT-style sequential read: batch b is tokens [b * BATCH, (b + 1) * BATCH)
    np.testing.assert_array_equal(stream[BATCH : 2 * BATCH].reshape(-1, SEQ), expected[32:64])


def test_datatrove_export_reads_back_with_datatroves_folder_dataset(built):
    from datatrove.utils.dataset import DatatroveFolderDataset

    _, _, _, out, manifest, expected = built
    # windows of seq_len + 1 tokens: a mixture of SEQ is read with seq_len=SEQ - 1
    folder = f"{out}/exports/datatrove"
    ds = DatatroveFolderDataset(folder, seq_len=SEQ - 1, token_size=2, shuffle=False)
    assert len(ds) == len(expected)
    got = np.stack([ds[i]["input_ids"].numpy() for i in range(len(ds))])
    np.testing.assert_array_equal(got, expected)
    # document boundaries (.ds.index) restart positions right after each EOS
    with_pos = DatatroveFolderDataset(folder, seq_len=SEQ - 1, token_size=2, return_positions=True)
    for i in range(len(expected)):
        tokens, want = expected[i], np.zeros(SEQ, dtype=np.int64)
        for j in range(1, SEQ):
            want[j] = 0 if tokens[j - 1] == EOS else want[j - 1] + 1
        np.testing.assert_array_equal(with_pos[i]["positions"].numpy(), want)
    meta = Path(f"{folder}/00000.ds.metadata").read_text().splitlines()
    assert meta[0] == "skillmix-bytes|2"
    counts = [int(p.read_text().splitlines()[1]) for p in Path(folder).glob("*.metadata")]
    assert sum(counts) == expected.size


def test_mds_export_equals_mdswriters_files_and_reads_back_with_streaming_dataset(built, tmp_path):
    _, _, _, out, manifest, expected = built
    env = streaming_env(tmp_path)
    np.save(tmp_path / "expected.npy", expected)
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from streaming import MDSWriter, StreamingDataset
        expected = np.load({str(tmp_path / "expected.npy")!r})
        ref = {str(tmp_path / "ref")!r}
        with MDSWriter(out=ref, columns={{"input_ids": "ndarray:uint16:{SEQ}"}},
                       size_limit={MDS_LIMIT}) as w:
            for row in expected:
                w.write({{"input_ids": row}})
        ds = StreamingDataset(local={out + "/exports/mds"!r}, shuffle=False,
                              batch_size={BATCH // SEQ})
        got = np.stack([sample["input_ids"] for sample in ds])
        np.save({str(tmp_path / "got.npy")!r}, got)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240,
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "got.npy"), expected)
    ours = sorted(os.listdir(f"{out}/exports/mds"))
    assert ours == sorted(os.listdir(tmp_path / "ref")) and len(ours) > 2
    for name in ours:
        ref = (tmp_path / "ref" / name).read_bytes()
        assert Path(f"{out}/exports/mds/{name}").read_bytes() == ref, name


def test_text_shards_load_with_datasets_in_the_token_order(built, tmp_path):
    datasets = need_module("datasets", "pip install datasets")
    _, _, _, out, _, expected = built
    files = sorted(glob.glob(f"{out}/shard-*.jsonl.gz"))
    ds = datasets.load_dataset(
        "json", data_files=files, split="train", cache_dir=str(tmp_path / "cache")
    )
    stream = bytearray()
    eos = []
    for text, n in zip(ds["text"], ds["eos"], strict=True):
        data = text.encode("utf-8")
        stream += data
        eos.append((len(stream), n))
        stream += b"\0" * n
    tokens = np.frombuffer(bytes(stream), dtype=np.uint8).astype(np.uint16)
    for end, n in eos:
        tokens[end : end + n] = EOS
    flat = expected.reshape(-1)
    np.testing.assert_array_equal(tokens[: flat.size], flat)


def test_exports_added_to_a_built_mixture_leave_its_files_alone(built, tmp_path):
    root, source, plan, _, _, expected = built
    out = f"{root}/later"
    first = build_mixture(source, [CMP], plan, out, allowed_roots=[root], plots=False, audit=False)
    assert first["manifest"]["exports"] == {} and first["manifest"]["order"] == "fixed"
    before = {p: Path(p).read_bytes() for p in glob.glob(f"{out}/*.bin")}
    second = build_mixture(
        source, [CMP], plan, out, allowed_roots=[root], plots=False, audit=False, exports=["bin"]
    )
    assert list(second["manifest"]["exports"]) == ["bin"]
    assert before == {p: Path(p).read_bytes() for p in glob.glob(f"{out}/*.bin")}
    got = np.concatenate([ex.read_bin(p) for p in sorted(glob.glob(f"{out}/exports/bin/*.bin"))])
    np.testing.assert_array_equal(got.reshape(-1, SEQ), expected)
    with pytest.raises(ex.ExportError, match="unknown export"):
        build_mixture(source, [CMP], plan, out, allowed_roots=[root], exports=["tfrecord"])


def test_token_dtype_comes_from_the_manifest_and_defaults_to_uint16():
    assert ex.token_dtype({"tokenizer": {"kind": "bytes"}}) == np.dtype("<u2")
    assert ex.token_dtype({"token_dtype": "uint32"}) == np.dtype("<u4")
    assert ex.token_dtype({"tokenizer": {"dtype": "<u4"}}) == np.dtype("<u4")
    with pytest.raises(ex.ExportError):
        ex.token_dtype({"token_dtype": "int64"})


@pytest.mark.timeout(300)
def test_an_export_on_a_full_disk_names_it_keeps_the_mixture_and_is_written_on_a_rerun(
    built, tmp_path
):
    """A real full filesystem (a tmpfs, as tests/reliability/test_full_disk.py mounts)."""
    from curation.atomic import DiskFull
    from tests.reliability.test_full_disk import small_disk

    root, source, plan, _, _, expected = built
    with small_disk(tmp_path / "disk", "4m") as disk:
        out = str(disk.where / "mix")
        roots = [root, str(disk.where)]
        build_mixture(source, [CMP], plan, out, allowed_roots=roots, plots=False, audit=False)
        manifest_before = Path(f"{out}/manifest.json").read_bytes()
        disk.fill()
        with pytest.raises(DiskFull) as raised:
            build_mixture(
                source, [CMP], plan, out, allowed_roots=roots, plots=False, audit=False,
                exports=["bin"],
            )  # fmt: skip
        error = raised.value
        assert error.path == f"{out}/exports/bin" and error.needed == expected.size * 2
        assert "the mixture's bin export" in str(error) and "free there" in str(error)
        assert os.listdir(f"{out}/exports") == []  # no partial export, no temporary folder
        assert Path(f"{out}/manifest.json").read_bytes() == manifest_before
        disk.free()
        again = build_mixture(
            source, [CMP], plan, out, allowed_roots=roots, plots=False, audit=False,
            exports=["bin"],
        )  # fmt: skip
        assert list(again["manifest"]["exports"]) == ["bin"]
        files = sorted(glob.glob(f"{out}/exports/bin/*.bin"))
        got = np.concatenate([ex.read_bin(p) for p in files]).reshape(-1, SEQ)
        np.testing.assert_array_equal(got, expected)
