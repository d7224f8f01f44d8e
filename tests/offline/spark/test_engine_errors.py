"""What goes wrong before Spark runs gives one line naming it, through the real CLI: a master or
Spark Connect endpoint that does not answer, no Java, no PySpark. None of these start a JVM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from featurestore import FeatureStore
from tests.support.cli import one_line_error, run_cli
from tests.support.redis import free_port
from tests.support.repos import copy_example_repo
from tests.support.spark import use_spark


def test_a_master_that_does_not_answer_is_named(tmp_path: Path, tiny_data: Path) -> None:
    port = free_port()
    repo = use_spark(copy_example_repo(tmp_path / "repo", tiny_data), master=f"spark://127.0.0.1:{port}")
    FeatureStore(repo).apply()  # in this process: the CLI run under test is the ingestion
    done = run_cli("materialize", "--offline", "--repo", str(repo))
    one_line_error(done, f"the Spark master spark://127.0.0.1:{port} does not answer", "refused")
    assert not (repo / ".featurestore" / "warehouse").exists()


def test_a_spark_connect_endpoint_that_does_not_answer_is_named(tmp_path: Path, tiny_data: Path) -> None:
    port = free_port()
    repo = use_spark(copy_example_repo(tmp_path / "repo", tiny_data), remote=f"sc://127.0.0.1:{port}")
    FeatureStore(repo).apply()  # in this process: the CLI run under test is the ingestion
    done = run_cli("materialize", "--offline", "--repo", str(repo))
    one_line_error(done, f"the Spark Connect endpoint sc://127.0.0.1:{port} does not answer")


def test_missing_java_is_named(tmp_path: Path, tiny_data: Path) -> None:
    repo = use_spark(copy_example_repo(tmp_path / "repo", tiny_data))
    FeatureStore(repo).apply()  # in this process: the CLI run under test is the ingestion
    no_java = {"PATH": str(Path(sys.executable).parent), "JAVA_HOME": ""}
    done = run_cli("materialize", "--offline", "--repo", str(repo), env=no_java)
    one_line_error(done, "needs Java 17 or later", "openjdk-17-jre-headless")


def test_missing_pyspark_is_named(tmp_path: Path, tiny_data: Path) -> None:
    repo = use_spark(copy_example_repo(tmp_path / "repo", tiny_data))
    FeatureStore(repo).apply()  # in this process: the CLI run under test is the ingestion
    # The installed CLI, in an interpreter where importing pyspark fails as if it were absent.
    program = (
        "import sys; sys.modules['pyspark'] = None; "
        f"sys.argv = ['featurestore', 'materialize', '--offline', '--repo', {str(repo)!r}]; "
        "from featurestore.cli import main; main()"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    one_line_error(done, "needs PySpark, which is not installed", "pip install 'featurestore[spark]'")
