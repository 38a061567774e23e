"""PostgreSQL's binary COPY format for metric chunk rows and arrays, written and read without a per-element step.

asyncpg encodes an array element by element, checking each against abstract
base classes, which costs more than the rest of a flush. A chunk's arrays are
packed here instead by ``struct``, all the values in network byte order in one
call, then spread into the format's (length, value) cells by one strided copy of
32-bit words a word of the value. Arrays read from a COPY are taken apart by
``struct``, a block of cells a call, skipping each cell's length word. The
layout is PostgreSQL's documented COPY BINARY format and the arrays' binary send
format (one dimension, no NULLs).
"""

from __future__ import annotations

import struct
import uuid
from array import array
from collections.abc import Iterable, Sequence

import asyncpg

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = struct.pack(">h", -1)

_INT4_OID = 23
_FLOAT8_OID = 701
_ARRAY_HEAD = struct.Struct(">iiiiii")  # field length, ndim, has nulls, element type, size, lower bound
_NULL = struct.pack(">i", -1)
_INT8 = struct.Struct(">iq")
_INT4 = struct.Struct(">ii")
_FLOAT8 = struct.Struct(">id")
_BOOL = {True: struct.pack(">ib", 1, 1), False: struct.pack(">ib", 1, 0)}
_UUID = struct.pack(">i", 16)


# A cell's length word (4 or 8) as a 32-bit word of the ``array`` module, in the order of its bytes in memory.
_LENGTH_WORDS = {width: array("I", struct.pack(">i", width)) for width in (4, 8)}
_PACKERS: dict[tuple[str, int], struct.Struct] = {}


def _packer(code: str, count: int) -> struct.Struct:
    packer = _PACKERS.get((code, count))
    if packer is None:
        if len(_PACKERS) >= 256:
            _PACKERS.clear()
        packer = _PACKERS[(code, count)] = struct.Struct(f">{count}{code}")
    return packer


def _array_field(values: Sequence, code: str, width: int, oid: int) -> bytes:
    """The field of a one-dimensional array without NULLs; ``code`` is the values' ``struct`` code."""
    count = len(values)
    words = width // 4
    # The cells as 32-bit words: the length word, then the value's words in network order.
    cells = _LENGTH_WORDS[width] * ((1 + words) * count)
    packed = memoryview(_packer(code, count).pack(*values)).cast("I")
    view = memoryview(cells)
    for word in range(words):
        view[1 + word :: 1 + words] = packed[word::words]
    return _ARRAY_HEAD.pack(20 + 4 * (1 + words) * count, 1, 0, oid, count, 1) + cells


def int4_array(values: Sequence[int]) -> bytes:
    """An int4[] field (with its length word); every value must fit in 32 bits.

    The offsets of steps without a gap (``range(n)``) and of equal timestamps (all
    zero) are cut from cells made once, with no step per value.
    """
    count = len(values)
    if values.__class__ is range and values.start == 0 and values.step == 1:
        return _ARRAY_HEAD.pack(20 + 8 * count, 1, 0, _INT4_OID, count, 1) + _counting_cells(count)
    if count and not values[0] and not any(values):
        return _ARRAY_HEAD.pack(20 + 8 * count, 1, 0, _INT4_OID, count, 1) + _ZERO_CELL * count
    return _array_field(values, "i", 4, _INT4_OID)


_ZERO_CELL = _INT4.pack(4, 0)
_counting = b""


def _counting_cells(count: int) -> bytes:
    """The int4 cells of 0, 1, ..., count - 1."""
    global _counting
    if len(_counting) < 8 * count:
        _counting = _array_field(range(max(count, 4096)), "i", 4, _INT4_OID)[24:]
    return _counting[: 8 * count]


def float8_array(values: Sequence[float]) -> bytes:
    """A float8[] field (with its length word)."""
    return _array_field(values, "d", 8, _FLOAT8_OID)


def _text(value: str | None) -> bytes:
    if value is None:
        return _NULL
    data = value.encode()
    return struct.pack(">i", len(data)) + data


def _float8(value: float | None) -> bytes:
    return _NULL if value is None else _FLOAT8.pack(8, value)


def chunk_tuples(rows: Iterable[tuple], chunk_ids: Sequence[int] | None = None) -> bytes:
    """COPY BINARY data (header to trailer) of chunk rows laid out as ``points.CHUNK_COLUMNS``,
    each followed by its chunk id when ``chunk_ids`` gives them (one per row)."""
    return b"".join((HEADER, chunk_records(rows, chunk_ids), TRAILER))


def chunk_records(rows: Iterable[tuple], chunk_ids: Sequence[int] | None = None) -> bytes:
    """The COPY BINARY rows of :func:`chunk_tuples`, without its header and trailer."""
    parts = []
    append = parts.append
    ids = iter(chunk_ids) if chunk_ids is not None else None
    fields = b"\x00\x11" if ids is not None else b"\x00\x10"  # 17 or 16 fields
    for (run_id, key, model_id, dataset_name, dataset_digest, first_step, last_step, first_timestamp,
         last_timestamp, min_value, max_value, point_count, sealed, step_offsets, timestamp_offsets, values) in rows:
        append(b"".join((
            fields,
            _UUID, uuid.UUID(run_id).bytes if isinstance(run_id, str) else run_id.bytes,
            _text(key), _text(model_id), _text(dataset_name), _text(dataset_digest),
            _INT8.pack(8, first_step), _INT8.pack(8, last_step),
            _INT8.pack(8, first_timestamp), _INT8.pack(8, last_timestamp),
            _float8(min_value), _float8(max_value), _INT4.pack(4, point_count), _BOOL[sealed],
            int4_array(step_offsets), int4_array(timestamp_offsets), float8_array(values),
        )))
        if ids is not None:
            append(_INT8.pack(8, next(ids)))
    return b"".join(parts)


async def copy_chunks(
    conn: asyncpg.Connection, rows: Sequence[tuple], columns: Sequence[str], chunk_ids: Sequence[int] | None = None
) -> None:
    """COPY chunk rows into metric_chunks, with the given chunk ids (else the column's default)."""
    if chunk_ids is not None:
        columns = (*columns, "chunk_id")
    # A memoryview: asyncpg would take bytes for a file name.
    await conn.copy_to_table(
        "metric_chunks", source=memoryview(chunk_tuples(rows, chunk_ids)), columns=columns, format="binary"
    )


# ---- reading ----------------------------------------------------------------------------

_INT2 = struct.Struct(">h")
_LENGTH = struct.Struct(">i")


class CopyReader:
    """Rows of COPY BINARY data that arrives in pieces of any size, each row as its fields' bytes (None for NULL)."""

    def __init__(self):
        self._data = bytearray()
        self._header_read = False
        self.ended = False

    def feed(self, piece: bytes) -> list[list[bytes | None]]:
        """Take the next piece; returns the rows it completes."""
        data = self._data
        data += piece
        position = 0
        if not self._header_read:
            if len(data) < len(HEADER):
                return []
            if bytes(data[:11]) != HEADER[:11]:
                raise ValueError("not COPY BINARY data")
            extension = _LENGTH.unpack_from(data, 15)[0]
            position = len(HEADER) + extension
            self._header_read = True
        rows = []
        size = len(data)
        while position + 2 <= size:
            count = _INT2.unpack_from(data, position)[0]
            if count == -1:
                self.ended = True
                position += 2
                break
            at = position + 2
            fields: list[bytes | None] = []
            for _ in range(count):
                if at + 4 > size:
                    break
                length = _LENGTH.unpack_from(data, at)[0]
                at += 4
                if length == -1:
                    fields.append(None)
                    continue
                if at + length > size:
                    break
                fields.append(bytes(data[at:at + length]))
                at += length
            if len(fields) < count:
                break
            rows.append(fields)
            position = at
        del data[:position]
        return rows


def int4_of(field: bytes) -> int:
    """An int4 field's value."""
    return _LENGTH.unpack(field)[0]


_CELLS: dict[tuple[str, int], struct.Struct] = {}
# Cells unpacked a call: a format of this many cells stays small.
_BLOCK = 65_536


def _cells(code: str, count: int) -> struct.Struct:
    cells = _CELLS.get((code, count))
    if cells is None:
        if len(_CELLS) >= 64:
            _CELLS.clear()
        cells = _CELLS[(code, count)] = struct.Struct(">" + ("4x" + code) * count)
    return cells


def _array_values(field: bytes, code: str) -> list:
    ndim, has_nulls = _LENGTH.unpack_from(field, 0)[0], _LENGTH.unpack_from(field, 4)[0]
    if ndim == 0:
        return []
    if ndim != 1 or has_nulls:
        raise ValueError("only one-dimensional arrays without NULLs are read")
    left = _LENGTH.unpack_from(field, 12)[0]
    values: list = []
    offset = 20
    while left:
        cells = _cells(code, min(left, _BLOCK))
        values += cells.unpack_from(field, offset)
        offset += cells.size
        left -= min(left, _BLOCK)
    return values


def int8_array_of(field: bytes) -> list[int]:
    """An int8[] field's values (one dimension, no NULLs)."""
    return _array_values(field, "q")


def float8_array_of(field: bytes) -> list[float]:
    """A float8[] field's values (one dimension, no NULLs)."""
    return _array_values(field, "d")
