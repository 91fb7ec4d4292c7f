"""Which files a path names (ObjectStoragePath on local files): folders, globs, markers, errors."""

from __future__ import annotations

import pytest
from airflow.providers.common.compat.sdk import AirflowException

from airflow_provider_juspay.utils.files import files_to_read


@pytest.fixture
def drop(tmp_path):
    day = tmp_path / "drop" / "2026-11-26"
    (day / "late").mkdir(parents=True)
    for name in ("b.csv", "a.csv", "c.jsonl", "_SUCCESS", ".a.csv.crc", "late/d.csv"):
        (day / name).write_text("order_id\nX\n")
    return tmp_path / "drop"


def names(url: str) -> list[str]:
    return [name.rsplit("/drop/", 1)[1] for name, _ in files_to_read(url)]


def test_a_folder_gives_its_files_by_name_without_markers_or_sub_folders(drop):
    assert names(f"{drop}/2026-11-26") == ["2026-11-26/a.csv", "2026-11-26/b.csv", "2026-11-26/c.jsonl"]


def test_globs_match_one_level_or_with_double_star_every_level(drop):
    assert names(f"file://{drop}/*/*.csv") == ["2026-11-26/a.csv", "2026-11-26/b.csv"]
    assert names(f"{drop}/2026-11-26/**/*.csv") == [
        "2026-11-26/a.csv",
        "2026-11-26/b.csv",
        "2026-11-26/late/d.csv",
    ]


def test_each_file_opens_as_bytes(drop):
    [(name, opener)] = files_to_read(f"{drop}/2026-11-26/a.csv")
    with opener() as stream:
        assert stream.read() == b"order_id\nX\n" and name.endswith("a.csv")


@pytest.mark.parametrize(
    ("tail", "why"),
    [
        ("2026-11-27", "no such file or folder"),
        ("2026-11-26/*.parquet", "no file matches"),
        ("2026-11-26/late/nothing/*", "no file matches"),
    ],
)
def test_nothing_to_read_fails_naming_the_path(drop, tail, why):
    with pytest.raises(AirflowException, match=why):
        files_to_read(f"{drop}/{tail}")


def test_an_empty_folder_and_a_glob_without_a_folder_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    with pytest.raises(AirflowException, match="holds no file to read"):
        files_to_read(str(tmp_path / "empty"))
    with pytest.raises(AirflowException, match="needs a folder before its first wildcard"):
        files_to_read("s3://*/x.csv")
