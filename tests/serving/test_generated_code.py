"""The committed gRPC code in featurestore/serving/v1 is what proto/ generates today."""

from __future__ import annotations

from pathlib import Path

from grpc_tools import protoc

from tests.support.repos import ROOT

GENERATED = ["serving_pb2.py", "serving_pb2.pyi", "serving_pb2_grpc.py"]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    # The invocation of `make proto`, into a temporary folder.
    proto = ROOT / "proto"
    status = protoc.main([
        "grpc_tools.protoc", f"-I{proto}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
        f"--grpc_python_out={tmp_path}", str(proto / "featurestore/serving/v1/serving.proto"),
    ])
    assert status == 0
    stale = [
        name for name in GENERATED
        if (tmp_path / "featurestore/serving/v1" / name).read_bytes()
        != (ROOT / "featurestore/serving/v1" / name).read_bytes()
    ]
    assert stale == [], f"featurestore/serving/v1/{stale} is stale: run 'make proto' and commit the result"
    assert sorted(p.name for p in (tmp_path / "featurestore/serving/v1").iterdir()) == sorted(GENERATED)
