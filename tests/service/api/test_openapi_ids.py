"""Every operation of the OpenAPI document has an explicit, stable id (`{resource}_{action}`),
so that generated clients get method names like `scans_retrieve`, not
`read_scan_v1_scans__scan_id__get`."""

from __future__ import annotations

import re

from service.api.app import app

OPERATION_ID = re.compile(r"^[a-z]+(_[a-z]+)+$")


def test_every_operation_has_an_explicit_unique_id() -> None:
    operations = [
        (method.upper(), path, op)
        for path, ops in app.openapi()["paths"].items()
        for method, op in ops.items()
    ]
    assert operations
    ids = [op.get("operationId", "") for _, _, op in operations]
    for (method, path, _), op_id in zip(operations, ids, strict=True):
        # A generated id (`read_scan_v1_scans__scan_id__get`) has digits and double underscores.
        assert OPERATION_ID.fullmatch(op_id), (method, path, op_id)
    assert len(set(ids)) == len(ids), sorted(ids)
    assert {"scans_create", "scans_retrieve", "jobs_artifacts_download", "keys_rotate"} <= set(ids)
