"""get_model(suffix): a local file, or the one file in a folder ending with suffix."""

from __future__ import annotations

from pathlib import Path

import pytest

from servekit.serving import V2ModelServer


def folder(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).write_text(name, encoding="utf-8")
    return tmp_path


def test_a_file_path_is_the_model_file_with_no_extra_data(tmp_path: Path) -> None:
    path = folder(tmp_path, "m.pkl") / "m.pkl"
    assert V2ModelServer(model_path=str(path)).get_model(".pkl") == (str(path), {})


def test_a_folder_is_searched_by_suffix_and_the_other_files_are_extra_data(
    tmp_path: Path,
) -> None:
    path = folder(tmp_path, "model.pkl", "categories.csv", "notes.txt")
    model_file, extra = V2ModelServer(model_path=str(path)).get_model(suffix=".pkl")
    assert model_file == str(path / "model.pkl")
    assert sorted(extra) == ["categories", "notes"]
    assert extra["categories"].local() == str(path / "categories.csv")
    assert extra["notes"].get() == b"notes.txt"
    assert list(extra["categories"].as_df().columns) == ["categories.csv"]


@pytest.mark.parametrize(
    ("names", "suffix", "message"),
    [
        (["a.pkl", "b.pkl"], ".pkl", "holds 2 files ending with '.pkl', expected exactly one"),
        (["a.onnx"], ".pkl", "holds 0 files ending with '.pkl'"),
    ],
)
def test_a_folder_without_exactly_one_match_names_its_files(
    tmp_path: Path, names: list[str], suffix: str, message: str
) -> None:
    path = folder(tmp_path, *names)
    with pytest.raises(FileNotFoundError, match=message) as info:
        V2ModelServer(model_path=str(path)).get_model(suffix)
    assert all(name in str(info.value) for name in names)


def test_paths_that_are_not_local_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not local"):
        V2ModelServer(model_path="store://models/project/iris:latest").get_model()
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        V2ModelServer(model_path=str(tmp_path / "missing")).get_model()
    with pytest.raises(ValueError, match="needs model_path"):
        V2ModelServer().get_model()
