"""Results people return (issue 14 item 5): pandas Series and frames with labels that are not
text as Parquet, xarray as netCDF, PyTorch tensors as safetensors. Each codec is found by
type (no registration), round-trips exactly through every backend, opens without gitstore,
and refuses with a typed error what it would not give back exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from components import SimpleComponent

from gitstore.codecs import choose_codec, decode_bytes, encode_bytes
from gitstore.errors import LossyDataError, UnsupportedDataError

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")


def stored(store: Any, value: Any, n: int) -> Any:
    c = SimpleComponent({"n": n})
    store.store(c, "result", value)
    return store.retrieve(c, "result")


# --- pandas: Series, and DataFrames whose column labels are not text --------------------------

def _pandas_values() -> list[Any]:
    named = pd.Series(np.array([1.5, np.nan, -0.0], dtype=np.float32), name="rate",
                      index=pd.Index(["a", "b", "c"], name="cell"))
    named.attrs = {"units": "Hz"}
    multi_cols = pd.DataFrame(np.arange(4.0).reshape(2, 2), columns=pd.MultiIndex.from_tuples(
        [("v", 1), ("w", 2)], names=["var", "run"]))
    mixed = pd.DataFrame({0: [1, 2], 2.5: ["x", "y"], (1, "a"): [True, False], "s": [3, 4]})
    mixed.attrs = {"source": "rig 2"}
    return [
        named,
        pd.Series([1, 2, 3], dtype="Int64"),  # no name, nullable ints, RangeIndex
        pd.Series(["p", "q"], name=7, index=pd.date_range("2024-01-01", periods=2, freq="D")),
        pd.DataFrame(np.ones((2, 3), dtype=np.int16)),  # RangeIndex columns 0..2
        pd.DataFrame(np.ones((2, 2)), columns=pd.Index([10, 20], name="trial")),
        multi_cols,
        mixed,
        pd.DataFrame({"v": [1.0, 2.0]}, index=pd.date_range("2024-01-01", periods=2, freq="h")),
    ]


def _assert_same_pandas(got: Any, want: Any) -> None:
    assert type(got) is type(want)
    if isinstance(want, pd.Series):
        pd.testing.assert_series_equal(got, want, check_exact=True, check_index_type=True,
                                       check_freq=True)
        assert got.name == want.name and type(got.name) is type(want.name)
    else:
        pd.testing.assert_frame_equal(got, want, check_exact=True, check_index_type=True,
                                      check_column_type=True, check_freq=True)
        assert list(got.columns) == list(want.columns)
        assert [type(c) for c in got.columns] == [type(c) for c in want.columns]
        assert got.columns.names == want.columns.names
    assert got.index.names == want.index.names
    assert got.attrs == want.attrs


@pytest.mark.parametrize("which", range(8))
def test_series_and_frames_with_non_text_columns_round_trip(store: Any, which: int) -> None:
    value = _pandas_values()[which]
    assert choose_codec(value).name == "parquet"
    _assert_same_pandas(stored(store, value, which), value)


def test_series_parquet_opens_without_gitstore(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    codec, data = encode_bytes(_pandas_values()[0])
    (tmp_path / "s.parquet").write_bytes(data)
    frame = pd.read_parquet(tmp_path / "s.parquet")  # plain pandas: a one-column frame
    assert list(frame.columns) == ["rate"] and frame.index.name == "cell"
    codec, data = encode_bytes(_pandas_values()[6])
    (tmp_path / "m.parquet").write_bytes(data)
    assert pq.read_table(tmp_path / "m.parquet").column_names == ["0", "2.5", "(1, 'a')", "s"]


@pytest.mark.parametrize("value, error", [
    (lambda: pd.DataFrame({"lists": [[1], [2, 3]]}), LossyDataError),  # back as arrays
    (lambda: pd.DataFrame({"obj": pd.Series(["a", "b"], dtype=object)}), LossyDataError),
    (lambda: pd.DataFrame({"z": np.array([1 + 2j])}), UnsupportedDataError),
    (lambda: pd.Series([1], name=object()), LossyDataError),
], ids=["list-column", "object-strings", "complex", "object-name"])
def test_what_parquet_would_change_is_refused(store: Any, value: Any, error: Any) -> None:
    c = SimpleComponent({"n": 1})
    with pytest.raises(error):
        store.store(c, "result", value())
    assert store.retrieve(c, "result") is None  # nothing half-written


# --- xarray as netCDF ------------------------------------------------------------------------

def _xarray_values() -> list[Any]:
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    ds = xr.Dataset(
        {"v": (("t", "x"), np.arange(6, dtype=np.float32).reshape(2, 3),
               {"units": "mV", "n": 3, "gain": 1.5, "ids": [1, 2], "pair": (0.5, 2.5),
                "seed": np.int64(5), "scale": np.float32(0.25)}),
         "flag": ("t", np.array([True, False])),
         "i8": ("x", np.array([-1, 0, 1], dtype=np.int8)),
         "u64": ("x", np.array([1, 2, 2**63], dtype=np.uint64)),
         "name": ("x", np.array(["a", "é", "漢"])),
         "when": ("t", np.array(["2024-01-01", "2024-05-17"], dtype="datetime64[ns]")),
         "nan": ("x", np.array([np.nan, 1.0, -0.0]))},
        coords={"t": [10, 20], "x": ["p", "q", "r"], "pos": ("x", [1.5, 2.5, 3.5])},
        attrs={"title": "run 1", "k": 2})
    named = xr.DataArray(np.arange(3, dtype=np.int32), dims="x", coords={"x": [0.1, 0.2, 0.3]},
                         name="counts", attrs={"units": "spikes"})
    unnamed = xr.DataArray(np.ones((2, 2), dtype=np.float64), dims=("a", "b"))
    return [ds, named, unnamed]


def _assert_same_xarray(got: Any, want: Any) -> None:
    assert type(got) is type(want)
    assert got.identical(want)
    variables = want.variables if hasattr(want, "variables") else want.coords.variables
    for name, var in variables.items():
        other = got.variables[name] if hasattr(got, "variables") else got.coords[name].variable
        assert other.dtype == var.dtype, name
        assert {k: type(v) for k, v in other.attrs.items()} == \
            {k: type(v) for k, v in var.attrs.items()}
    if not hasattr(want, "variables"):
        assert got.name == want.name and got.dtype == want.dtype
    assert {k: type(v) for k, v in got.attrs.items()} == {k: type(v) for k, v in want.attrs.items()}


@pytest.mark.parametrize("which", range(3))
def test_xarray_round_trips_exactly_as_netcdf(store: Any, which: int) -> None:
    value = _xarray_values()[which]
    assert choose_codec(value).name == "netcdf"
    _assert_same_xarray(stored(store, value, which), value)


def test_netcdf_opens_with_plain_xarray(tmp_path: Path) -> None:
    import xarray as xr

    ds, named, _unnamed = _xarray_values()
    codec, data = encode_bytes(ds)
    assert (codec.name, codec.ext) == ("netcdf", "nc") and data[:8] == b"\x89HDF\r\n\x1a\n"
    (tmp_path / "d.nc").write_bytes(data)
    with xr.open_dataset(tmp_path / "d.nc") as plain:
        assert plain["v"].attrs["units"] == "mV" and plain["u64"].dtype == np.uint64
        np.testing.assert_array_equal(plain["v"].values, ds["v"].values)
    _codec, data = encode_bytes(named)
    (tmp_path / "a.nc").write_bytes(data)
    with xr.open_dataarray(tmp_path / "a.nc") as plain_array:
        assert plain_array.name == "counts" and plain_array.attrs == {"units": "spikes"}


@pytest.mark.parametrize("change", ["datetime-us", "bool-attr", "dict-attr", "int-name"])
def test_what_netcdf_would_change_is_refused(store: Any, change: str) -> None:
    xr = pytest.importorskip("xarray")
    _xarray_values()
    value: Any = xr.Dataset({"v": ("x", [1.0, 2.0])})
    if change == "datetime-us":
        value["t"] = ("x", np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[us]"))
    elif change == "bool-attr":
        value.attrs["ok"] = True
    elif change == "dict-attr":
        value.attrs["meta"] = {"a": 1}
    else:
        value = xr.DataArray([1.0], dims="x", name=3)
    c = SimpleComponent({"n": 1})
    with pytest.raises(LossyDataError):
        store.store(c, "result", value)
    assert store.retrieve(c, "result") is None


# --- PyTorch tensors as safetensors ----------------------------------------------------------

def _torch() -> Any:
    return pytest.importorskip(
        "torch", reason="torch is not installed (gitstore[torch]; CI installs the CPU build "
                        "torch==2.13.0 from the machine's disk)")


def _tensors() -> list[Any]:
    torch = _torch()
    grad = torch.tensor([1.0, 2.0], requires_grad=True)
    return [
        torch.arange(12, dtype=torch.float32).reshape(3, 4),
        torch.tensor([1.5, -0.0, float("nan"), float("inf")], dtype=torch.bfloat16),
        torch.tensor([True, False]),
        torch.tensor(7, dtype=torch.int64),  # 0-d
        torch.empty((0, 3), dtype=torch.float16),
        torch.arange(6, dtype=torch.int16).reshape(2, 3).t(),  # not contiguous
        torch.tensor([255, 0], dtype=torch.uint8),
        grad,
    ]


def _bits(t: Any) -> bytes:
    """A tensor's bytes (NaN payloads and -0.0 included)."""
    torch = _torch()
    flat = t.detach().contiguous().reshape(-1)
    return bytes(flat.view(torch.uint8).numpy()) if flat.numel() else b""


def _assert_same_tensor(got: Any, want: Any) -> None:
    torch = _torch()
    assert type(got) is torch.Tensor
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.requires_grad == want.requires_grad and got.device == want.device
    assert got.is_leaf and _bits(got) == _bits(want)


@pytest.mark.parametrize("which", range(8))
def test_tensors_round_trip_exactly_as_safetensors(store: Any, which: int) -> None:
    value = _tensors()[which]
    assert choose_codec(value).name == "safetensors"
    _assert_same_tensor(stored(store, value, which), value)


def test_safetensors_open_without_gitstore(tmp_path: Path) -> None:
    _torch()
    st = pytest.importorskip("safetensors.torch")
    for value in _tensors():
        codec, data = encode_bytes(value)
        assert (codec.name, codec.ext) == ("safetensors", "safetensors")
        (tmp_path / "t.safetensors").write_bytes(data)
        loaded = st.load_file(tmp_path / "t.safetensors")
        assert list(loaded) == ["tensor"]
        assert loaded["tensor"].dtype == value.dtype
        assert loaded["tensor"].shape == value.shape and _bits(loaded["tensor"]) == _bits(value)
        # and the other way: a file written by safetensors itself reads here
        written = st.save({"tensor": value.detach().contiguous()})
        _assert_same_tensor(decode_bytes(codec, written), value.detach())


@pytest.mark.parametrize("make", [
    lambda torch: torch.tensor([1.0], requires_grad=True) * 2,  # a grad_fn
    lambda torch: torch.tensor([1 + 2j]),  # complex: safetensors has no such dtype
    lambda torch: torch.tensor([[0, 1.0]]).to_sparse(),
], ids=["grad_fn", "complex", "sparse"])
def test_what_safetensors_would_change_is_refused(store: Any, make: Any) -> None:
    torch = _torch()
    c = SimpleComponent({"n": 1})
    with pytest.raises(LossyDataError):
        store.store(c, "result", make(torch))
    with pytest.raises(UnsupportedDataError):  # a subclass (nn.Parameter) is not a Tensor here
        store.store(c, "result", torch.nn.Parameter(torch.ones(1)))
    assert store.retrieve(c, "result") is None


def test_hostile_safetensors_header_is_corrupt() -> None:
    _torch()
    import struct

    from gitstore.codecs import codec_by_name
    from gitstore.errors import CorruptEntryError

    codec = codec_by_name("safetensors")
    header = b'{"tensor":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}'
    for data in (b"\x00" * 3, struct.pack("<Q", 2**62) + b"{}",
                 struct.pack("<Q", len(header)) + header + b"\x00" * 8):
        with pytest.raises(CorruptEntryError):
            decode_bytes(codec, data)


def test_import_gitstore_loads_no_science_library() -> None:
    code = ("import sys, gitstore, gitstore.codecs\n"
            "gitstore.cache, gitstore.GitDataStore\n"
            "print(sorted(m for m in ('numpy', 'pandas', 'pyarrow', 'xarray', 'torch', 'h5py')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_plugin_scan_is_skipped_only_when_no_distribution_names_the_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gitstore import codecs

    import importlib.machinery

    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(tmp_path)])
    # only the standard finder of distributions (a test may have added others)
    monkeypatch.setattr(sys, "meta_path", [importlib.machinery.PathFinder])
    assert codecs._may_have_plugins() is False
    (tmp_path / "old.egg-info").write_text("Name: old\n")  # an egg-info file: no entry points
    info = tmp_path / "other-1.0.dist-info"
    info.mkdir()
    (info / "entry_points.txt").write_text("[console_scripts]\nx = y:z\n")
    assert codecs._may_have_plugins() is False
    (info / "entry_points.txt").write_text("[gitstore.codecs]\npoint = p:register\n")
    assert codecs._may_have_plugins() is True
