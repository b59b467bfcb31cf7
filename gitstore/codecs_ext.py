"""Codecs for the results of scientific libraries, used when the library is installed.

=============  ============  ===================================================================
codec          ext           data
=============  ============  ===================================================================
netcdf         .nc           an xarray ``Dataset`` or ``DataArray`` (``gitstore[xarray]``:
                             xarray, h5netcdf, h5py): netCDF-4 (HDF5) written by h5netcdf;
                             opens with ``xarray.open_dataset(path)`` (``open_dataarray`` for
                             a DataArray)
safetensors    .safetensors  a ``torch.Tensor`` (``gitstore[torch]``): the safetensors format
                             (a JSON header, then the raw little-endian data), one tensor
                             named ``tensor``; opens with ``safetensors.torch.load_file``
=============  ============  ===================================================================

Neither library is imported to choose a codec (a value of their type means it is loaded).
Each value is checked after encoding: what would not come back exactly is refused with
:class:`~gitstore.errors.LossyDataError` rather than silently changed.

netCDF: what does not round-trip, and is refused: datetime64/timedelta64 variables other than
nanosecond ones (xarray decodes times as ``[ns]``), ``bool`` or ``dict`` or ``None``
attributes (netCDF has none), names that are not ``str``, object arrays of mixed types.
Attributes come back with the type they had: Python ``int``/``float``/``list``/``tuple``
attributes (netCDF keeps numpy types) are recorded in a global attribute ``gitstore`` (JSON)
and restored; ``encoding`` (packing, compression chosen by the user) is not kept: the values
are written as they are.

safetensors: dense tensors on the CPU, of the dtypes safetensors names (float64/32/16,
bfloat16, float8, int64/32/16/8, uint64/32/16/8, bool); ``requires_grad`` of a leaf tensor is
kept (in the header's ``__metadata__``). Refused: tensors on another device (move them with
``.cpu()``), sparse or quantized tensors, complex dtypes, tensors with a ``grad_fn`` (call
``.detach()``), subclasses (``nn.Parameter``: store ``p.data``). Strides are not kept (a
non-contiguous tensor comes back contiguous, with the same values).
"""

from __future__ import annotations

import io
import json
import struct
import sys
from typing import IO, Any

from .errors import LossyDataError, UnknownCodecError

BinaryIO = IO[bytes]


def _seekable(fp: BinaryIO) -> BinaryIO:
    if not (hasattr(fp, "seek") and hasattr(fp, "seekable") and fp.seekable()):
        return io.BytesIO(fp.read())
    return fp


# --- xarray as netCDF-4 ----------------------------------------------------------------------

def is_xarray(value: Any) -> bool:
    xr = sys.modules.get("xarray")
    return xr is not None and type(value) in (xr.Dataset, xr.DataArray)


_MARK = "gitstore"  # the global attribute: {"type": "DataArray", "attrs": {var: {name: kind}}}
_DA_NAME = "__xarray_dataarray_variable__"  # xarray's own name for an unnamed DataArray


def _python_attrs(attrs: Any) -> dict[str, str]:
    kinds = {}
    for name, v in attrs.items():
        t = type(v)
        if t is int or t is float or t is list or t is tuple:
            kinds[name] = t.__name__
    return kinds


def _restore_attrs(attrs: Any, kinds: dict[str, str]) -> None:
    for name, kind in kinds.items():
        if name not in attrs:
            continue
        v = attrs[name]
        if kind in ("int", "float"):
            attrs[name] = v.item() if hasattr(v, "item") else v
        else:
            items = v.tolist() if hasattr(v, "tolist") else v
            items = items if isinstance(items, list) else [items]
            attrs[name] = items if kind == "list" else tuple(items)


def write_netcdf(value: Any, fp: BinaryIO) -> None:
    import xarray as xr

    is_array = type(value) is xr.DataArray
    if is_array:
        if value.name is not None and type(value.name) is not str:
            raise LossyDataError(f"a DataArray named {value.name!r} ({type(value.name).__name__})"
                                 " cannot be stored as netCDF: names are text", "name")
        ds = value.to_dataset(name=_DA_NAME if value.name is None else value.name,
                              promote_attrs=False)
    else:
        ds = value.copy(deep=False)
    ds = ds.drop_encoding()  # the values as they are, not packed as a file once had them
    kinds = {"": _python_attrs(ds.attrs)} if _python_attrs(ds.attrs) else {}
    for name, var in ds.variables.items():
        if _python_attrs(var.attrs):
            kinds[str(name)] = _python_attrs(var.attrs)
    mark: dict[str, Any] = {}
    if is_array:
        mark["type"] = "DataArray"
    if kinds:
        mark["attrs"] = kinds
    if _MARK in ds.attrs:
        raise LossyDataError(f"the attribute {_MARK!r} is gitstore's own in a netCDF file",
                             _MARK)
    if mark:
        ds.attrs[_MARK] = json.dumps(mark, sort_keys=True)
    buf = io.BytesIO()
    try:
        ds.to_netcdf(buf, engine="h5netcdf")
    except Exception as exc:  # noqa: BLE001 - any refusal of the writer: nothing is stored
        raise LossyDataError(f"this {type(value).__name__} cannot be stored as netCDF: "
                             f"{type(exc).__name__}: {exc}", "write") from None
    data = buf.getvalue()
    back = _decode_netcdf(data)
    problem = _xarray_difference(value, back)
    if problem:
        raise LossyDataError(f"this {type(value).__name__} would not come back exactly from "
                             f"netCDF: {problem}", problem)
    fp.write(data)


def read_netcdf(fp: BinaryIO) -> Any:
    try:
        import h5netcdf  # noqa: F401
        import xarray  # noqa: F401
    except ImportError:
        raise UnknownCodecError("unknown codec 'netcdf': no codec registered here reads it "
                                "(install gitstore[xarray]: xarray, h5netcdf, h5py)",
                                "netcdf") from None
    return _decode_netcdf(_seekable(fp).read())


#: what a netCDF blob may declare beyond its own size (its variables' shapes times their item
#: sizes): what gitstore writes declares at most its size (no compression, every variable
#: written), a blob from elsewhere declaring more (never-written chunks read as the fill value,
#: a compression bomb) would take memory it does not hold
_NETCDF_SLACK = 1 << 20
_NETCDF_FACTOR = 4
_DIMENSION_ONLY = b"This is a netCDF dimension but not a netCDF variable"


def _check_hdf5(data: bytes) -> None:
    """Refuse an HDF5 file that reads outside itself, or declares far more than it holds.

    HDF5 can keep a dataset's data in another file named by path (external storage, virtual
    datasets) and link to objects of other files (external links): from a remote, that names
    any file on this machine. Every object is visited (hard links once, without recursion).

    Raises:
        ValueError: external storage, a virtual dataset, an external or soft link, or
            variables declaring more than ``_NETCDF_FACTOR`` times the blob (plus slack).
    """
    import h5py

    limit = _NETCDF_FACTOR * len(data) + _NETCDF_SLACK
    declared = 0
    with h5py.File(io.BytesIO(data), "r") as f:
        seen: set[int] = set()
        todo: list[tuple[str, Any]] = [("/", f)]
        while todo:
            path, group = todo.pop()
            for name in group:
                where = path.rstrip("/") + "/" + name
                link = group.get(name, getlink=True)
                if not isinstance(link, h5py.HardLink):
                    raise ValueError(f"the netCDF file holds a {type(link).__name__} at "
                                     f"{where[:200]!r}: a link (possibly to another file) is "
                                     "refused")
                obj = group[name]
                addr = h5py.h5o.get_info(obj.id).addr
                if addr in seen:
                    continue
                seen.add(addr)
                if isinstance(obj, h5py.Group):
                    todo.append((where, obj))
                    continue
                if not isinstance(obj, h5py.Dataset):
                    continue
                plist = obj.id.get_create_plist()
                if plist.get_layout() == h5py.h5d.VIRTUAL:
                    raise ValueError(f"the netCDF variable {where[:200]!r} is a virtual "
                                     "dataset (its data in other files): refused")
                if plist.get_external_count():
                    raise ValueError(f"the netCDF variable {where[:200]!r} keeps its data in "
                                     "external files: refused")
                label = obj.attrs.get("NAME") if "NAME" in obj.attrs else None
                if isinstance(label, bytes) and label.startswith(_DIMENSION_ONLY):
                    continue  # a dimension's scale: its values are never read
                shape = obj.shape or ()
                count = 1
                for n in shape:
                    count *= int(n)
                declared += count * obj.dtype.itemsize
                if declared > limit:
                    raise ValueError(f"the netCDF file of {len(data)} bytes declares variables "
                                     f"of {declared} bytes and more: refused (a file that "
                                     "does not hold its data)")


def _decode_netcdf(data: bytes) -> Any:
    import xarray as xr

    _check_hdf5(data)
    with xr.open_dataset(io.BytesIO(data), engine="h5netcdf") as opened:
        ds = opened.load()
    ds = ds.drop_encoding()
    mark = json.loads(ds.attrs.pop(_MARK, "{}"))
    for var, kinds in (mark.get("attrs") or {}).items():
        _restore_attrs(ds.attrs if var == "" else ds.variables[var].attrs, kinds)
    if mark.get("type") != "DataArray":
        return ds
    (name,) = ds.data_vars
    array = ds[name]
    if name == _DA_NAME:
        array.name = None
    return array


def _xarray_difference(a: Any, b: Any) -> str:
    """What differs between a value and what came back ('' when nothing)."""
    if type(a) is not type(b):
        return f"a {type(a).__name__} came back as a {type(b).__name__}"
    if hasattr(a, "data_vars"):
        if list(a.data_vars) != list(b.data_vars):
            return f"variables {list(a.data_vars)} came back as {list(b.data_vars)}"
    elif a.name != b.name:
        return f"the name {a.name!r} came back as {b.name!r}"
    for name, var in a.variables.items() if hasattr(a, "variables") else \
            [(a.name, a.variable)] + list(a.coords.variables.items()):
        other = b.variables[name] if hasattr(b, "variables") else \
            (b.variable if name == a.name and name not in a.coords else b.coords[name].variable)
        if var.dtype != other.dtype:
            return f"variable {name!r}: dtype {var.dtype} came back as {other.dtype}"
        problem = _attrs_difference(var.attrs, other.attrs, f"variable {name!r}")
        if problem:
            return problem
    problem = _attrs_difference(a.attrs, b.attrs, "the attributes")
    if problem:
        return problem
    if not a.identical(b):
        return "values, coordinates or dimensions differ"
    return ""


def _attrs_difference(a: Any, b: Any, where: str) -> str:
    if list(a) != list(b):
        return f"{where}: attributes {list(a)} came back as {list(b)}"
    for name, v in a.items():
        w = b[name]
        if type(v) is not type(w):
            return (f"{where}: attribute {name!r} of type {type(v).__name__} came back as "
                    f"{type(w).__name__}")
        if hasattr(v, "dtype") and (v.dtype != w.dtype or getattr(v, "shape", ()) != w.shape):
            return f"{where}: attribute {name!r} ({v.dtype}) came back as {w.dtype}"
        if hasattr(v, "tobytes"):
            if v.tobytes() != w.tobytes():
                return f"{where}: attribute {name!r} changed"
        elif isinstance(v, (list, tuple)):
            if [type(x) for x in v] != [type(x) for x in w] or list(v) != list(w):
                return f"{where}: attribute {name!r} {v!r} came back as {w!r}"
        elif v != w and v == v:
            return f"{where}: attribute {name!r} {v!r} came back as {w!r}"
    return ""


# --- PyTorch tensors as safetensors ----------------------------------------------------------

def is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and type(value) is torch.Tensor


# safetensors' dtype names (https://github.com/huggingface/safetensors, format.md)
_TORCH_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2",
    "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8",
    "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL",
}
_TENSOR = "tensor"
#: the longest JSON header read: gitstore writes one tensor (64 dimensions at most), a header
#: under 2 KiB; safetensors' own bound (100 MiB) would let a blob of small JSON items decode to
#: gigabytes of Python objects
MAX_HEADER = 64 << 10


def _refuse_tensor(value: Any) -> str:
    torch = sys.modules["torch"]
    if value.device.type != "cpu":
        return f"it is on the device {value.device} (store t.cpu())"
    if value.layout != torch.strided:
        return f"its layout is {value.layout} (store t.to_dense())"
    if value.is_quantized:
        return "it is quantized (store t.dequantize())"
    if str(value.dtype).removeprefix("torch.") not in _TORCH_DTYPES:
        return f"safetensors has no dtype {value.dtype}"
    if value.grad_fn is not None:
        return "it has a grad_fn, which cannot be stored (store t.detach())"
    if sys.byteorder != "little":  # pragma: no cover - safetensors data is little-endian
        return "this machine is big-endian"
    return ""


def write_safetensors(value: Any, fp: BinaryIO) -> None:
    import torch

    problem = _refuse_tensor(value)
    if problem:
        raise LossyDataError(f"this tensor cannot be stored as safetensors: {problem}", problem)
    t = value.detach().resolve_conj().resolve_neg().contiguous()
    raw = t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b""
    nbytes = len(raw) if isinstance(raw, bytes) else raw.nbytes
    meta = {"format": "pt"}
    if value.requires_grad:
        meta["requires_grad"] = "true"
    header = json.dumps({
        "__metadata__": meta,
        _TENSOR: {"dtype": _TORCH_DTYPES[str(t.dtype).removeprefix("torch.")],
                  "shape": list(t.shape), "data_offsets": [0, nbytes]},
    }, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)  # the data starts 8-byte aligned, as safetensors does
    fp.write(struct.pack("<Q", len(header)) + header)
    if nbytes:
        fp.write(memoryview(raw).cast("B"))


def read_safetensors(fp: BinaryIO) -> Any:
    try:
        import torch
    except ImportError:
        raise UnknownCodecError("unknown codec 'safetensors': no codec registered here reads "
                                "it (install gitstore[torch]: torch)", "safetensors") from None
    data = fp.read()
    if len(data) < 8:
        raise ValueError("a safetensors file starts with its 8-byte header length")
    (size,) = struct.unpack("<Q", data[:8])
    if size > MAX_HEADER:
        raise ValueError(f"the safetensors header declares {size} bytes, over the "
                         f"{MAX_HEADER} of a gitstore safetensors file: refused unread")
    if 8 + size > len(data):
        raise ValueError(f"the safetensors header declares {size} bytes, the file holds "
                         f"{len(data) - 8}")
    header = json.loads(data[8:8 + size].decode("utf-8"))
    body = memoryview(data)[8 + size:]
    if not isinstance(header, dict):
        raise ValueError("the safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if list(header) != [_TENSOR] or not isinstance(header[_TENSOR], dict) or \
            not isinstance(meta, dict):
        raise ValueError(f"a gitstore safetensors file holds one tensor named {_TENSOR!r}, "
                         f"not {sorted(header)[:5]}")
    entry = header[_TENSOR]
    names = {v: k for k, v in _TORCH_DTYPES.items()}
    dtype_name, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype_name not in names:
        raise ValueError(f"unknown safetensors dtype {dtype_name!r}")
    if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)):
        raise ValueError(f"bad tensor shape {shape!r}")
    dtype = getattr(torch, names[dtype_name])
    count = 1
    for n in shape:
        count *= n
    nbytes = count * torch.empty((), dtype=dtype).element_size()
    if offsets != [0, nbytes] or len(body) != nbytes:
        raise ValueError(f"the tensor's data is {len(body)} bytes, its header declares "
                         f"{offsets!r} for {nbytes} bytes")
    if nbytes:
        tensor = torch.frombuffer(bytearray(body), dtype=torch.uint8).view(dtype).reshape(shape)
    else:
        tensor = torch.empty(shape, dtype=dtype)
    if meta.get("requires_grad") == "true":
        tensor.requires_grad_(True)
    return tensor
