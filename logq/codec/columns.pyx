# cython: language_level=3, boundscheck=True, wraparound=False, initializedcheck=True
"""Compiled columnar decoding of a RecordBatch v2 (optional; see logq/codec/columnar.py).

``decode_columns`` walks the records of one batch exactly as ``decode_records`` does (the
same checks in the same order, the same errors and messages) but builds no Python object
per record: offsets, timestamps, the key and value lengths and validity go into flat
native arrays, and the key and value bytes are gathered into one buffer each (Arrow's
offsets-plus-data layout). Only headers, when a record has some, are built as tuples.
logq.codec.columnar wraps the result as numpy arrays without copying it.

The input is hostile: every read position is checked against the end of the buffer before
the byte is read, every length read from the data against the bytes left, and nothing is
allocated in proportion to a count before that count was checked against the bytes present.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.long cimport PyLong_FromLongLong
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport INT64_MIN, int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from logq.errors import CorruptRecordError

cdef extern from *:
    """
    static inline int logq_columns_add_ovf(long long a, long long b, long long *r) {
        return __builtin_add_overflow(a, b, r);
    }
    static inline Py_ssize_t logq_columns_basicsize(PyObject *t) { return ((PyTypeObject *)t)->tp_basicsize; }
    static inline int logq_columns_has_alloc(PyObject *t) { return ((PyTypeObject *)t)->tp_alloc != NULL; }
    static inline PyObject *logq_columns_alloc(PyObject *t, Py_ssize_t n) {
        return ((PyTypeObject *)t)->tp_alloc((PyTypeObject *)t, n);
    }
    /* From 3.14 a tuple caches its hash in a field that tuple_alloc sets and tp_alloc does not. */
    #if PY_VERSION_HEX >= 0x030E0000
    #define LOGQ_COLUMNS_DIRECT_TUPLES 0
    #else
    #define LOGQ_COLUMNS_DIRECT_TUPLES 1
    #endif
    """
    bint add_ovf "logq_columns_add_ovf"(long long a, long long b, long long *r) nogil
    Py_ssize_t basicsize "logq_columns_basicsize"(object t)
    bint has_alloc "logq_columns_has_alloc"(object t)
    object alloc_instance "logq_columns_alloc"(object t, Py_ssize_t n)
    bint DIRECT_TUPLES "LOGQ_COLUMNS_DIRECT_TUPLES"

cdef extern from "Python.h":
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1
    char *PyBytes_AS_STRING_MUT "PyBytes_AS_STRING"(object o)
    # Steals a reference. Also right for tuple subclasses: the item array is the tuple's.
    void PyTuple_SET_ITEM(object p, Py_ssize_t pos, PyObject *o)

__all__ = ["decode_columns", "build_records", "OUT_OF_RANGE"]

cdef Py_ssize_t TUPLE_BASICSIZE = basicsize(tuple)
cdef object tuple_new = tuple.__new__

#: The reason given when an offset or a timestamp does not fit an int64 column.
OUT_OF_RANGE = "record offset or timestamp does not fit an int64"

cdef enum:
    MIN_RECORD_BYTES = 7
    ATTR_LOG_APPEND_TIME = 0x08


cdef object corrupt(str reason):
    return CorruptRecordError(reason)


cdef inline uint8_t at(const uint8_t *d, Py_ssize_t p, Py_ssize_t limit) except? 0:
    """d[p], or the IndexError the pure codec's ``data[p]`` raises at or past ``limit``."""
    if p < 0 or p >= limit:
        raise IndexError("index out of range")
    return d[p]


cdef int64_t varint(const uint8_t *d, Py_ssize_t *pp, Py_ssize_t limit, int max_bytes) except? -1:
    """The pure decode_varint: zigzag LEB128 of at most ``max_bytes`` (5 or 10) bytes before ``limit``."""
    cdef Py_ssize_t pos = pp[0]
    cdef Py_ssize_t p
    cdef uint64_t result = 0
    cdef uint8_t b
    cdef int i
    cdef int shift = 0
    for i in range(max_bytes):
        p = pos + i
        if p < 0 or p >= limit:
            raise corrupt(f"varint truncated at byte {pos}")
        b = d[p]
        if b < 0x80:
            if i == max_bytes - 1 and (b >> (4 if max_bytes <= 5 else 1)):
                raise corrupt(f"varint at byte {pos} does not fit {32 if max_bytes <= 5 else 64} bits")
            result |= (<uint64_t>b) << shift
            pp[0] = p + 1
            return <int64_t>((result >> 1) ^ (0 - (result & 1)))
        result |= (<uint64_t>(b & 0x7F)) << shift
        shift += 7
    raise corrupt(f"varint longer than {max_bytes} bytes at byte {pos}")


cdef inline int64_t varint_fast(const uint8_t *d, Py_ssize_t *pp, Py_ssize_t limit, Py_ssize_t slow_limit,
                                int max_bytes) except? -1:
    """The pure decoder's inlined varint: one byte, or two read against ``limit``, else
    decode_varint against ``slow_limit``."""
    cdef Py_ssize_t p = pp[0]
    cdef uint64_t z
    cdef uint8_t b = at(d, p, limit)
    if b < 0x80:
        pp[0] = p + 1
        return <int64_t>((b >> 1) ^ (0 - (b & 1)))
    if at(d, p + 1, limit) < 0x80:
        z = (b & 0x7F) | (<uint64_t>d[p + 1] << 7)
        pp[0] = p + 2
        return <int64_t>((z >> 1) ^ (0 - (z & 1)))
    return varint(d, pp, slow_limit, max_bytes)


cdef tuple decode_headers(const uint8_t *d, Py_ssize_t *pp, Py_ssize_t end):
    cdef Py_ssize_t p = pp[0]
    cdef int64_t n, kl, vl, i
    n = varint(d, &p, end, 5)
    if n < 0 or n * 2 > end - p:
        raise corrupt(f"header count {n} does not fit the record")
    items = []
    for i in range(n):
        kl = varint(d, &p, end, 5)
        if kl < 0 or p + kl > end:
            raise corrupt(f"header key length {kl} is invalid")
        hk = PyUnicode_DecodeUTF8(<char *>(d + p), kl, NULL)
        p += kl
        vl = varint(d, &p, end, 5)
        if vl == -1:
            hv = None
        elif vl < 0 or p + vl > end:
            raise corrupt(f"header value length {vl} is invalid")
        else:
            hv = PyBytes_FromStringAndSize(<const char *>(d + p), vl)
            p += vl
        items.append((hk, hv))
    pp[0] = p
    return tuple(items)


cdef object gather(const uint8_t *data, Py_ssize_t *starts, int32_t *offs, Py_ssize_t n):
    """One bytes object holding the spans [starts[i], starts[i] + offs[i+1] - offs[i]) back to back."""
    cdef Py_ssize_t i, ln
    out = PyBytes_FromStringAndSize(NULL, offs[n])
    cdef char *o = PyBytes_AS_STRING_MUT(out)
    for i in range(n):
        ln = offs[i + 1] - offs[i]
        if ln:
            memcpy(o + offs[i], data + starts[i], ln)
    return out


cdef object columns(const uint8_t *data, Py_ssize_t limit, object h, object min_offset):
    cdef int64_t count = h.records_count
    cdef int64_t base_offset = h.base_offset
    cdef int64_t base_ts = h.base_timestamp
    cdef bint log_append = (h.attributes & ATTR_LOG_APPEND_TIME) != 0
    cdef int64_t last_delta = h.last_offset_delta
    cdef int64_t max_ts = h.max_timestamp
    cdef int64_t ln, tsd, od, kl, vl, i, min_off
    cdef long long off, ts
    cdef Py_ssize_t p = 0
    cdef Py_ssize_t end, kstart, vstart
    cdef Py_ssize_t n = 0
    cdef Py_ssize_t cap = count if count > 0 else 0
    cdef uint8_t b
    cdef bint any_min = False
    cdef bint out_of_range = False
    cdef int ovf = 0
    cdef tuple hdr
    cdef list headers = None
    if count * MIN_RECORD_BYTES > limit:
        raise corrupt(f"{count} records cannot fit in {limit} bytes")
    min_off = PyLong_AsLongLongAndOverflow(min_offset, &ovf)
    if ovf > 0:
        min_off = 0
        any_min = True  # every offset is below it: parse, keep nothing
    elif ovf < 0:
        min_off = INT64_MIN
    offsets_b = PyBytes_FromStringAndSize(NULL, cap * 8)
    stamps_b = PyBytes_FromStringAndSize(NULL, cap * 8)
    key_offsets_b = PyBytes_FromStringAndSize(NULL, (cap + 1) * 4)
    value_offsets_b = PyBytes_FromStringAndSize(NULL, (cap + 1) * 4)
    key_valid_b = PyBytes_FromStringAndSize(NULL, cap)
    value_valid_b = PyBytes_FromStringAndSize(NULL, cap)
    cdef int64_t *offsets = <int64_t *>PyBytes_AS_STRING_MUT(offsets_b)
    cdef int64_t *stamps = <int64_t *>PyBytes_AS_STRING_MUT(stamps_b)
    cdef int32_t *key_offsets = <int32_t *>PyBytes_AS_STRING_MUT(key_offsets_b)
    cdef int32_t *value_offsets = <int32_t *>PyBytes_AS_STRING_MUT(value_offsets_b)
    cdef uint8_t *key_valid = <uint8_t *>PyBytes_AS_STRING_MUT(key_valid_b)
    cdef uint8_t *value_valid = <uint8_t *>PyBytes_AS_STRING_MUT(value_valid_b)
    cdef Py_ssize_t *key_starts = <Py_ssize_t *>malloc((cap + 1) * sizeof(Py_ssize_t))
    cdef Py_ssize_t *value_starts = <Py_ssize_t *>malloc((cap + 1) * sizeof(Py_ssize_t))
    if key_starts == NULL or value_starts == NULL:
        free(key_starts)
        free(value_starts)
        raise MemoryError()
    key_offsets[0] = 0
    value_offsets[0] = 0
    try:
        for i in range(count):
            ln = varint_fast(data, &p, limit, limit, 5)
            end = p + ln
            if ln < 6 or end > limit:
                raise corrupt(f"record length {ln} does not fit the batch")
            p += 1  # record attributes: unused
            tsd = varint_fast(data, &p, limit, end, 10)
            od = varint_fast(data, &p, limit, end, 5)
            b = at(data, p, limit)
            kstart = 0
            if b == 1:
                kl = -1
                p += 1
            else:
                if b < 0x80:
                    kl = (b >> 1) ^ (0 - (b & 1))
                    p += 1
                else:
                    kl = varint(data, &p, end, 5)
                if kl < -1 or p + kl > end:
                    raise corrupt(f"key length {kl} does not fit the record")
                if kl != -1:
                    kstart = p
                    p += kl
            vl = varint_fast(data, &p, limit, end, 5)
            vstart = 0
            if vl == -1:
                pass
            elif vl < 0 or p + vl > end:
                raise corrupt(f"value length {vl} does not fit the record")
            else:
                vstart = p
                p += vl
            b = at(data, p, limit)
            if b == 0:
                hdr = None
                p += 1
            else:
                hdr = decode_headers(data, &p, end)
            if p != end:
                raise corrupt(f"record body is {ln} bytes but its fields use {ln - end + p}")
            if not 0 <= od <= last_delta:
                raise corrupt(f"record offset delta {od} outside the batch's 0..{last_delta}")
            if add_ovf(base_offset, od, &off):
                if (<object>base_offset) + (<object>od) < min_offset:
                    continue
                out_of_range = True  # reported after the walk, as the pure codec would
                continue
            if any_min or off < min_off:
                continue
            if log_append:
                ts = max_ts
            elif add_ovf(base_ts, tsd, &ts):
                out_of_range = True
                continue
            offsets[n] = off
            stamps[n] = ts
            key_valid[n] = kl != -1
            key_starts[n] = kstart
            key_offsets[n + 1] = key_offsets[n] + (<int32_t>kl if kl > 0 else 0)
            value_valid[n] = vl != -1
            value_starts[n] = vstart
            value_offsets[n + 1] = value_offsets[n] + (<int32_t>vl if vl > 0 else 0)
            if hdr and headers is None:
                headers = [()] * n
            if headers is not None:
                headers.append(hdr if hdr is not None else ())
            n += 1
        if p != limit:
            raise corrupt(f"{limit - p} bytes left over after {count} records")
        if out_of_range:
            raise corrupt(OUT_OF_RANGE)
        key_data = gather(data, key_starts, key_offsets, n)
        value_data = gather(data, value_starts, value_offsets, n)
    finally:
        free(key_starts)
        free(value_starts)
    return (
        n, offsets_b, stamps_b, key_offsets_b, key_data, key_valid_b, value_offsets_b, value_data, value_valid_b,
        headers,
    )


def decode_columns(data, h, min_offset=0):
    """The records of one batch's records section ``data`` (any buffer, uncompressed) as columns.

    Returns ``(n, offsets, timestamps, key_offsets, key_data, key_valid, value_offsets,
    value_data, value_valid, headers)``: ``n`` records kept (offset >= ``min_offset``);
    ``offsets`` and ``timestamps`` hold native int64s, ``key_offsets`` and ``value_offsets``
    native int32s (n + 1 of them, from 0), the ``*_valid`` one byte per record (0 = null), all
    as bytes whose first n (n + 1) items count; ``key_data``/``value_data`` the bytes of the
    non-null keys and values back to back; ``headers`` None when no kept record has headers,
    else a list of one tuple per kept record. Malformed records raise CorruptRecordError
    (or IndexError, as the pure codec) exactly where decode_records would.
    """
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return columns(<const uint8_t *>view.buf, view.len, h, min_offset)
    finally:
        PyBuffer_Release(&view)


# --------------------------------------------------------------------------- records from columns


cdef bint plain_tuple_subclass(object cls):
    """True when ``cls`` is a tuple subclass with the tuple's layout (a NamedTuple): its
    instances can be allocated and filled in place, as ``tuple.__new__`` does."""
    return (DIRECT_TUPLES and isinstance(cls, type) and issubclass(cls, tuple)
            and basicsize(cls) == TUPLE_BASICSIZE and has_alloc(cls))


cdef inline void set_item(object t, Py_ssize_t i, object o):
    Py_INCREF(o)
    PyTuple_SET_ITEM(t, i, <PyObject *>o)


cdef enum:
    OFFSETS, STAMPS, PARTS, CODES, KEY_OFFSETS, KEY_DATA, KEY_VALID, VALUE_OFFSETS, VALUE_DATA, VALUE_VALID, NBUF

cdef object span(const char *data, const int32_t *offs, const uint8_t *valid, Py_ssize_t i, Py_ssize_t size):
    """Item i of an offsets-plus-data column: bytes, or None where ``valid`` is 0."""
    if not valid[i]:
        return None
    cdef int32_t a = offs[i]
    cdef int32_t b = offs[i + 1]
    if a < 0 or b < a or b > size:
        raise ValueError(f"column offsets {a}..{b} outside its {size} bytes of data")
    return PyBytes_FromStringAndSize(data + a, b - a)


def build_records(cols, Py_ssize_t start, Py_ssize_t stop, cls):
    """Records ``start`` to ``stop`` of a RecordColumns, each built as
    ``cls(topic, partition, offset, timestamp, key, value, headers)`` in one step (the
    consumer's lazy path: a batch is decoded into columns, records are built as returned)."""
    cdef Py_buffer views[NBUF]
    cdef int got = 0
    cdef Py_ssize_t i, n, code
    cdef object rec, topic, hdr
    arrays = (cols.offsets, cols.timestamps, cols.partitions, cols.topic_codes, cols.key_offsets, cols.key_data,
              cols.key_valid, cols.value_offsets, cols.value_data, cols.value_valid)
    names = cols.topic_names
    headers = cols.headers
    cdef bint fast = plain_tuple_subclass(cls)
    out = []
    try:
        for got in range(NBUF):
            PyObject_GetBuffer(arrays[got], &views[got], PyBUF_SIMPLE)
        got = NBUF
        n = views[OFFSETS].len // 8
        if (views[STAMPS].len < n * 8 or views[PARTS].len < n * 4 or views[CODES].len < n * 4
                or views[KEY_OFFSETS].len < (n + 1) * 4 or views[VALUE_OFFSETS].len < (n + 1) * 4
                or views[KEY_VALID].len < n or views[VALUE_VALID].len < n):
            raise ValueError("the columns of a RecordColumns differ in length")
        if not 0 <= start <= stop <= n:
            raise IndexError(f"records {start}..{stop} of {n}")
        if headers is not None and len(headers) < n:
            raise ValueError("the headers column is shorter than the others")
        for i in range(start, stop):
            code = (<const int32_t *>views[CODES].buf)[i]
            topic = names[code]
            rec = alloc_instance(cls, 7) if fast else PyTuple_New(7)
            set_item(rec, 0, topic)
            set_item(rec, 1, PyLong_FromLongLong((<const int32_t *>views[PARTS].buf)[i]))
            set_item(rec, 2, PyLong_FromLongLong((<const int64_t *>views[OFFSETS].buf)[i]))
            set_item(rec, 3, PyLong_FromLongLong((<const int64_t *>views[STAMPS].buf)[i]))
            set_item(rec, 4, span(<const char *>views[KEY_DATA].buf, <const int32_t *>views[KEY_OFFSETS].buf,
                                  <const uint8_t *>views[KEY_VALID].buf, i, views[KEY_DATA].len))
            set_item(rec, 5, span(<const char *>views[VALUE_DATA].buf, <const int32_t *>views[VALUE_OFFSETS].buf,
                                  <const uint8_t *>views[VALUE_VALID].buf, i, views[VALUE_DATA].len))
            hdr = () if headers is None else headers[i]
            set_item(rec, 6, hdr)
            out.append(rec if fast else tuple_new(cls, rec))
    finally:
        for i in range(got):
            PyBuffer_Release(&views[i])
    return out
