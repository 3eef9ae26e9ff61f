"""Unpickle plain data without running code from the file.

``pickle.load`` calls whatever globals a file names (``os.system``, ``builtins.exec``, ...). :func:`load_plain_data`
accepts plain data (dict, list, tuple, str, bytes, int, float, bool, None) and numeric numpy arrays and scalars
(bool, int, uint, float, complex) and refuses every other global with :class:`UnsafePickleError`. Any pickle
protocol works (protocols 0-2 store bytes through ``_codecs.encode``, which is allowed for latin-1 only).
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle

import numpy as np


class UnsafePickleError(ValueError):
    """The file names a global, or builds a numpy object, that plain data does not need."""


_NUMERIC_KINDS = "biufc"  # bool, int, uint, float, complex


def _numpy_internal(name: str):
    """numpy's pickle helpers live in ``numpy._core`` (numpy >= 2) or ``numpy.core`` (numpy 1.x)."""
    module, attr = name.rsplit(".", 1)
    try:
        mod = __import__(f"numpy._core.{module}", fromlist=[attr])
    except ImportError:
        mod = __import__(f"numpy.core.{module}", fromlist=[attr])
    return getattr(mod, attr)


_np_reconstruct = _numpy_internal("multiarray._reconstruct")
_np_scalar = _numpy_internal("multiarray.scalar")
_np_frombuffer = _numpy_internal("numeric._frombuffer")


def _is_numeric_dtype(dtype) -> bool:
    return (
        isinstance(dtype, np.dtype)
        and dtype.kind in _NUMERIC_KINDS
        and not dtype.hasobject
        and dtype.fields is None
        and dtype.subdtype is None
    )


class _NdarrayToken:
    """Stands in for ``numpy.ndarray`` so the file can only name it as ``_reconstruct``'s subtype, not call it."""


_NDARRAY = _NdarrayToken()


class _PlainDataUnpickler(pickle._Unpickler):
    """Unpickler that builds only plain data and numeric numpy arrays; every other global is refused.

    Uses the pure-Python unpickler so that BUILD (``__setstate__``) can be checked as well: numpy's
    ``dtype.__setstate__`` would otherwise let a file turn a float dtype into an object-holding one.
    """

    def __init__(self, file):
        super().__init__(file)
        self.allowed = {}
        for core in ("numpy._core", "numpy.core"):  # written by numpy >= 2 / numpy 1.x
            self.allowed[(f"{core}.multiarray", "_reconstruct")] = self._reconstruct
            self.allowed[(f"{core}.multiarray", "scalar")] = self._scalar
            self.allowed[(f"{core}.numeric", "_frombuffer")] = self._frombuffer
        self.allowed[("numpy", "ndarray")] = _NDARRAY
        self.allowed[("numpy", "dtype")] = self._dtype
        self.allowed[("_codecs", "encode")] = self._latin1_bytes  # how protocols 0-2 store bytes

    def find_class(self, module, name):
        if self.proto < 3 and self.fix_imports:  # Python 2 names (``__builtin__.exec``) -> Python 3 ones
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return self.allowed[(module, name)]
        except (KeyError, TypeError):
            raise UnsafePickleError(
                f"refused to load the global {module}.{name}: the file may only contain plain data "
                f"(dict, list, str, numbers) and numeric numpy arrays",
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("uses a persistent id: the file may only contain plain data and numeric numpy arrays")

    def _refuse_dtype(self, what) -> UnsafePickleError:
        return UnsafePickleError(
            f"holds a numpy array or scalar of dtype {what}: the file may only contain plain data "
            f"and numeric numpy arrays (bool, int, uint, float, complex)",
        )

    def _check_dtype(self, dtype) -> None:
        if not _is_numeric_dtype(dtype):
            raise self._refuse_dtype(repr(dtype))

    def _dtype(self, spec, align=False, copy=False):
        try:
            dtype = np.dtype(spec) if isinstance(spec, str) else None
        except TypeError:
            dtype = None
        if not _is_numeric_dtype(dtype):
            raise self._refuse_dtype(repr(spec))
        return np.dtype(spec, bool(align), True)  # always a fresh copy: BUILD must never touch numpy's singletons

    def _latin1_bytes(self, text, encoding="utf-8"):
        if not isinstance(text, str) or encoding != "latin1":
            raise UnsafePickleError(f"calls _codecs.encode with the encoding {encoding!r} (only 'latin1' is allowed)")
        return text.encode("latin1")

    def _reconstruct(self, subtype, shape, typecode):
        if subtype is not _NDARRAY:
            raise UnsafePickleError("calls numpy's _reconstruct with something other than numpy.ndarray")
        if tuple(shape) != (0,) or typecode not in (b"b", "b"):  # what numpy writes; the array's BUILD gives the rest
            raise UnsafePickleError(f"calls numpy's _reconstruct with shape {shape!r} and typecode {typecode!r}")
        return _np_reconstruct(np.ndarray, shape, typecode)

    def _scalar(self, dtype, data):
        self._check_dtype(dtype)
        if not isinstance(data, bytes):
            raise UnsafePickleError("holds a numpy scalar without raw bytes")
        return _np_scalar(dtype, data)

    def _frombuffer(self, buf, dtype, shape, order, axis_order=None):
        self._check_dtype(dtype)
        if not isinstance(buf, (bytes, bytearray, pickle.PickleBuffer)):
            raise UnsafePickleError("holds a numpy array without a raw data buffer")
        return _np_frombuffer(buf, dtype, shape, order, axis_order)

    def load_build(self):
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.dtype):
            # (version, byteorder, subarray, names, fields, elsize, alignment, flags): only the byte order may be set
            itemsize = inst.itemsize
            if not (
                isinstance(state, tuple)
                and len(state) == 8
                and type(state[1]) is str
                and state[1] in ("<", ">", "|", "=")
                and state[2] is None  # subarray
                and state[3] is None  # names
                and state[4] is None  # fields
                and type(state[5]) is int
                and state[5] in (-1, itemsize)
                and type(state[6]) is int
                and state[6] in (-1, inst.alignment)
                and type(state[7]) is int
                and state[7] == inst.flags
            ):
                raise self._refuse_dtype(f"{inst} with a pickled state that adds fields, a subarray, a size or flags")
        elif isinstance(inst, np.ndarray):
            # (version, shape, dtype, is_fortran, raw data)
            if not isinstance(state, tuple) or len(state) != 5 or not isinstance(state[4], (bytes, bytearray)):
                raise UnsafePickleError("holds a numpy array without raw numeric data")
            self._check_dtype(state[2])
        else:
            raise UnsafePickleError(
                f"sets the state of a {type(inst).__name__}: "
                "the file may only contain plain data and numeric numpy arrays",
            )
        super().load_build()
        if isinstance(inst, np.dtype) and (not _is_numeric_dtype(inst) or inst.itemsize != itemsize):
            raise self._refuse_dtype(repr(inst))

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build


def load_plain_data(data: bytes):
    """The object pickled in ``data``, built from plain data and numeric numpy arrays only.

    Raises:
        UnsafePickleError: the file needs anything else (its message says what, in one line).
    """
    return _PlainDataUnpickler(io.BytesIO(data)).load()
