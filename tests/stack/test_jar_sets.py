"""The JVM jar sets under stack/jvm: Spark's Kafka connector set follows the installed pyspark and adds only
what pyspark's own jars lack."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pyspark

from incident_stack.jars import JAR_SETS, pinned, spec_dir

NS = {"m": "http://maven.apache.org/POM/4.0.0"}
PYSPARK_JARS = Path(pyspark.__file__).parent / "jars"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _pom(name: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """(properties, [(groupId, artifactId, version with properties filled in)]) of a set's pom.xml."""
    root = ET.parse(spec_dir(name) / "pom.xml").getroot()
    section = root.find("m:properties", NS)
    properties = {child.tag.split("}")[1]: (child.text or "").strip()
                  for child in (list(section) if section is not None else [])}
    dependencies = []
    for dependency in root.findall("m:dependencies/m:dependency", NS):
        version = re.sub(r"\$\{([^}]+)\}", lambda m: properties[m.group(1)], dependency.findtext("m:version", "", NS))
        dependencies.append((dependency.findtext("m:groupId", "", NS), dependency.findtext("m:artifactId", "", NS),
                             version))
    return properties, dependencies


def _artifact(jar: str) -> str:
    """A jar's artifact name without its version: spark-avro_2.13-4.2.0.jar -> spark-avro_2.13."""
    return re.sub(r"-\d[\w.]*\.jar$", "", jar)


def test_spark_kafka_set_follows_the_installed_pyspark() -> None:
    assert "spark-kafka" in JAR_SETS
    properties, dependencies = _pom("spark-kafka")
    # Bumping pyspark makes this fail until the connector set is checked against the new version.
    assert properties["pyspark.version"] == pyspark.__version__
    connector = properties["spark.connector.version"]
    assert _version(connector)[0] == _version(pyspark.__version__)[0]
    assert _version(connector) <= _version(pyspark.__version__)
    if connector != pyspark.__version__:  # the reason must be written down where the version is pinned
        assert f"serves no {pyspark.__version__}" in (spec_dir("spark-kafka") / "pom.xml").read_text()
    spark_artifacts = {a: v for g, a, v in dependencies if g == "org.apache.spark"}
    assert spark_artifacts == {"spark-sql-kafka-0-10_2.13": connector, "spark-avro_2.13": connector,
                               "spark-token-provider-kafka-0-10_2.13": connector}
    # Scala 2.13, as pyspark's own Spark jars.
    assert any(p.name.startswith("spark-core_2.13-") for p in PYSPARK_JARS.glob("*.jar"))


def test_spark_kafka_set_locks_exactly_its_pinned_artifacts_and_nothing_pyspark_ships() -> None:
    _, dependencies = _pom("spark-kafka")
    locked = pinned("spark-kafka")
    assert sorted(locked) == sorted(f"{artifact}-{version}.jar" for _, artifact, version in dependencies)
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in locked.values())
    shipped = {_artifact(p.name) for p in PYSPARK_JARS.glob("*.jar")}
    assert not {_artifact(jar) for jar in locked} & shipped
