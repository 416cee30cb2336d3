# cython: language_level=3, boundscheck=True, wraparound=False, initializedcheck=True
"""Compiled hot paths of the RecordBatch v2 codec (optional; see logq/codec/batch.py).

``logq.codec.batch`` stays the only public seam: it calls these functions when this
extension imported (and ``LOGQ_PURE_PYTHON`` is not ``1``), else its pure-Python twins.
Each function here accepts exactly what its twin accepts and raises the same errors with
the same messages; tests/codec runs the whole codec suite against both.

The input is hostile. Bytes are read through raw pointers, so bounds are checked by hand:
every read position is compared with the end of the buffer first (``at``, ``varint``),
every length read from the data is compared with the bytes left before it is used, and
64-bit sums the data can push past int64 are checked (``add64``) and then done with
Python integers, as the pure codec does. Nothing allocates in proportion to a length or
count read from the data.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.long cimport PyLong_FromLongLong
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport INT64_MIN, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy
from operator import index

cdef extern from *:
    """
    static inline int logq_add_ovf(long long a, long long b, long long *r) {
        return __builtin_add_overflow(a, b, r);
    }
    static inline int logq_sub_ovf(long long a, long long b, long long *r) {
        return __builtin_sub_overflow(a, b, r);
    }
    static inline Py_ssize_t logq_basicsize(PyObject *t) { return ((PyTypeObject *)t)->tp_basicsize; }
    static inline int logq_has_alloc(PyObject *t) { return ((PyTypeObject *)t)->tp_alloc != NULL; }
    static inline PyObject *logq_alloc(PyObject *t, Py_ssize_t n) {
        return ((PyTypeObject *)t)->tp_alloc((PyTypeObject *)t, n);
    }
    /* From 3.14 a tuple caches its hash in a field that tuple_alloc sets and tp_alloc does not. */
    #if PY_VERSION_HEX >= 0x030E0000
    #define LOGQ_DIRECT_TUPLES 0
    #else
    #define LOGQ_DIRECT_TUPLES 1
    #endif
    """
    bint add_ovf "logq_add_ovf"(long long a, long long b, long long *r) nogil
    bint sub_ovf "logq_sub_ovf"(long long a, long long b, long long *r) nogil
    Py_ssize_t basicsize "logq_basicsize"(object t)
    bint has_alloc "logq_has_alloc"(object t)
    object alloc_instance "logq_alloc"(object t, Py_ssize_t n)
    bint DIRECT_TUPLES "LOGQ_DIRECT_TUPLES"

cdef extern from "Python.h":
    # Steals a reference. Also right for tuple subclasses: the item array is the tuple's.
    void PyTuple_SET_ITEM(object p, Py_ssize_t pos, PyObject *o)
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1
    bint PyBytes_CheckExact(object o)
    Py_ssize_t PyBytes_GET_SIZE(object o)
    char *PyBytes_AS_STRING_MUT "PyBytes_AS_STRING"(object o)

__all__ = ["bind", "validate_batch", "decode_records", "walk_records", "encode_records", "encode_values"]

cdef enum:
    BATCH_OVERHEAD = 61
    LOG_OVERHEAD = 12
    CRC_OFFSET = 17
    CRC_START = 21
    MAGIC = 2
    MIN_RECORD_BYTES = 7
    ATTR_CODEC_MASK = 0x07
    ATTR_LOG_APPEND_TIME = 0x08
    ATTR_KNOWN = 0x7F

# Bound by logq.codec.batch at import (the classes live there; importing it here would be a cycle).
cdef object BatchHeader = None
cdef object BatchRecord = None
cdef object CorruptRecordError = None
cdef object crc32c = None
cdef object validate_fallback = None
cdef object tuple_new = tuple.__new__
cdef Py_ssize_t TUPLE_BASICSIZE = basicsize(tuple)


def bind(header_cls, record_cls, corrupt_error, crc_function, validate_pure):
    """Called once by logq.codec.batch: the result classes, the error, the CRC-32C function,
    and the pure validate_batch (for arguments outside this module's fast path)."""
    global BatchHeader, BatchRecord, CorruptRecordError, crc32c, validate_fallback
    BatchHeader = header_cls
    BatchRecord = record_cls
    CorruptRecordError = corrupt_error
    crc32c = crc_function
    validate_fallback = validate_pure


# --------------------------------------------------------------------------- helpers


cdef inline int64_t be64(const uint8_t *d) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(8):
        v = (v << 8) | d[i]
    return <int64_t>v


cdef inline int be32(const uint8_t *d) noexcept nogil:
    return <int>((<uint32_t>d[0] << 24) | (<uint32_t>d[1] << 16) | (<uint32_t>d[2] << 8) | <uint32_t>d[3])


cdef inline uint32_t be32u(const uint8_t *d) noexcept nogil:
    return (<uint32_t>d[0] << 24) | (<uint32_t>d[1] << 16) | (<uint32_t>d[2] << 8) | <uint32_t>d[3]


cdef inline int be16(const uint8_t *d) noexcept nogil:
    return <short>((d[0] << 8) | d[1])


cdef inline void put64(uint8_t *d, int64_t v) noexcept nogil:
    cdef uint64_t u = <uint64_t>v
    cdef int i
    for i in range(8):
        d[7 - i] = <uint8_t>(u & 0xFF)
        u >>= 8


cdef inline void put32(uint8_t *d, int64_t v) noexcept nogil:
    cdef uint32_t u = <uint32_t>v
    d[0] = <uint8_t>(u >> 24)
    d[1] = <uint8_t>(u >> 16)
    d[2] = <uint8_t>(u >> 8)
    d[3] = <uint8_t>u


cdef inline void put16(uint8_t *d, int v) noexcept nogil:
    d[0] = <uint8_t>((v >> 8) & 0xFF)
    d[1] = <uint8_t>(v & 0xFF)


cdef inline object add64(int64_t a, int64_t b):
    """a + b as a Python int, exact past int64 too (as the pure codec computes it)."""
    cdef long long r
    if add_ovf(a, b, &r):
        return (<object>a) + (<object>b)
    return PyLong_FromLongLong(r)


cdef object corrupt(str reason, object position=None):
    return CorruptRecordError(reason, position=position)


cdef inline uint8_t at(const uint8_t *d, Py_ssize_t p, Py_ssize_t limit) except? 0:
    """d[p], or the IndexError the pure codec's ``data[p]`` raises at or past ``limit``."""
    if p < 0 or p >= limit:
        raise IndexError("index out of range")
    return d[p]


cdef int64_t varint(const uint8_t *d, Py_ssize_t *pp, Py_ssize_t limit, int max_bytes) except? -1:
    """The pure decode_varint: zigzag LEB128 of at most ``max_bytes`` (5 or 10) bytes before
    ``limit``; the last allowed byte may hold no bits past 32 (or 64)."""
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


cdef bint plain_tuple_subclass(object cls):
    """True when ``cls`` is a tuple subclass with the tuple's layout (a NamedTuple): its
    instances can be allocated and filled in place, as ``tuple.__new__`` does."""
    return (DIRECT_TUPLES and isinstance(cls, type) and issubclass(cls, tuple)
            and basicsize(cls) == TUPLE_BASICSIZE and has_alloc(cls))


cdef inline void set_item(object t, Py_ssize_t i, object o):
    Py_INCREF(o)
    PyTuple_SET_ITEM(t, i, <PyObject *>o)


# --------------------------------------------------------------------------- validation


def validate_batch(buf, Py_ssize_t pos=0, end=None, max_batch_bytes=None, expected_offset=None):
    """validate_batch of logq.codec.batch (positional arguments); same checks, same errors."""
    cdef Py_buffer view
    cdef const uint8_t *d
    cdef Py_ssize_t e, n
    cdef int64_t base_offset, size
    cdef long long last
    cdef int batch_length, magic, attributes, last_delta, count
    cdef uint32_t crc
    PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
    try:
        n = view.len
        e = n if end is None else end
        if pos < 0 or e > n or e < 0:
            # Outside the fast path's assumptions (the pure codec's slicing rules apply).
            return validate_fallback(buf, pos, end, max_batch_bytes=max_batch_bytes, expected_offset=expected_offset)
        d = <const uint8_t *>view.buf
        if e - pos < LOG_OVERHEAD:
            raise corrupt("truncated batch prefix", pos)
        base_offset = be64(d + pos)
        batch_length = be32(d + pos + 8)
        size = <int64_t>batch_length + LOG_OVERHEAD
        if batch_length < BATCH_OVERHEAD - LOG_OVERHEAD:
            raise corrupt(f"batch length {batch_length} below the minimum", pos)
        if max_batch_bytes is not None and <object>size > max_batch_bytes:
            raise corrupt(f"batch size {size} exceeds the limit {max_batch_bytes}", pos)
        if pos + size > e:
            raise corrupt(f"batch of {size} bytes runs past the end of the data ({e - pos} left)", pos)
        # size >= BATCH_OVERHEAD and pos + size <= e <= n: the whole header is in the buffer.
        magic = <signed char>d[pos + 16]
        crc = be32u(d + pos + CRC_OFFSET)
        attributes = be16(d + pos + 21)
        last_delta = be32(d + pos + 23)
        count = be32(d + pos + 57)
        if magic != MAGIC:
            raise corrupt(f"unsupported magic {magic}", pos)
        if attributes & ~ATTR_KNOWN or (attributes & ATTR_CODEC_MASK) > 4:
            raise corrupt(f"unknown attributes 0x{attributes:04x}", pos)
        if count < 0 or last_delta < 0:
            raise corrupt("negative record count or offset delta", pos)
        if base_offset < 0 or add_ovf(base_offset, last_delta, &last):
            raise corrupt(f"base offset {base_offset} out of range", pos)
        if expected_offset is not None and <object>base_offset != expected_offset:
            raise corrupt(f"base offset {base_offset} where {expected_offset} was expected", pos)
        actual = crc32c(memoryview(buf)[pos + CRC_START : pos + size])
        if actual != crc:
            raise corrupt(f"CRC mismatch: stored 0x{crc:08x}, computed 0x{actual:08x}", pos)
        h = PyTuple_New(13)
        set_item(h, 0, base_offset)
        set_item(h, 1, batch_length)
        set_item(h, 2, be32(d + pos + 12))
        set_item(h, 3, magic)
        set_item(h, 4, crc)
        set_item(h, 5, attributes)
        set_item(h, 6, last_delta)
        set_item(h, 7, be64(d + pos + 27))
        set_item(h, 8, be64(d + pos + 35))
        set_item(h, 9, be64(d + pos + 43))
        set_item(h, 10, be16(d + pos + 51))
        set_item(h, 11, be32(d + pos + 53))
        set_item(h, 12, count)
        return tuple_new(BatchHeader, h)
    finally:
        PyBuffer_Release(&view)


# --------------------------------------------------------------------------- decoding


cdef object decode_headers(const uint8_t *d, Py_ssize_t *pp, Py_ssize_t end, bint build):
    cdef Py_ssize_t p = pp[0]
    cdef int64_t n, kl, vl, i
    n = varint(d, &p, end, 5)
    if n < 0 or n * 2 > end - p:
        raise corrupt(f"header count {n} does not fit the record")
    items = [] if build else None
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
            hv = PyBytes_FromStringAndSize(<const char *>(d + p), vl) if build else None
            p += vl
        if build:
            items.append((hk, hv))
    pp[0] = p
    return tuple(items) if build else None


cdef object parse_records(const uint8_t *data, Py_ssize_t limit, object h, object min_offset, object origin,
                          bint build):
    """The record walk of the pure _decode_records, check for check. With ``build`` false
    nothing is built and the number of records is returned."""
    cdef int64_t count = h.records_count
    cdef int64_t base_offset = h.base_offset
    cdef int64_t base_ts = h.base_timestamp
    cdef bint log_append = (h.attributes & ATTR_LOG_APPEND_TIME) != 0
    cdef int64_t last_delta = h.last_offset_delta
    cdef object max_ts = h.max_timestamp
    cdef int64_t ln, tsd, od, kl, vl, i, off, min_off
    cdef long long tmp
    cdef Py_ssize_t p = 0
    cdef Py_ssize_t end
    cdef uint8_t b
    cdef bint fast
    cdef bint any_min = False
    cdef int ovf = 0
    cdef Py_ssize_t width
    cdef object cls, topic, part, key, value, headers, ts, rec, offobj
    cdef int64_t kept = 0
    if count * MIN_RECORD_BYTES > limit:
        raise corrupt(f"{count} records cannot fit in {limit} bytes")
    min_off = PyLong_AsLongLongAndOverflow(min_offset, &ovf)
    if ovf > 0:
        min_off = 0
        any_min = True  # every offset is below it: parse, return nothing
    elif ovf < 0:
        min_off = INT64_MIN
    if origin is None:
        cls = BatchRecord
        width = 5
        topic = part = None
    else:
        cls, topic, part = origin
        width = 7
    fast = plain_tuple_subclass(cls)
    out = [] if build else None
    for i in range(count):
        ln = varint_fast(data, &p, limit, limit, 5)
        end = p + ln
        if ln < 6 or end > limit:
            raise corrupt(f"record length {ln} does not fit the batch")
        p += 1  # record attributes: unused
        tsd = varint_fast(data, &p, limit, end, 10)
        od = varint_fast(data, &p, limit, end, 5)
        b = at(data, p, limit)
        if b == 1:
            key = None
            p += 1
        else:
            if b < 0x80:
                kl = (b >> 1) ^ (0 - (b & 1))
                p += 1
            else:
                kl = varint(data, &p, end, 5)
            if kl < -1 or p + kl > end:
                raise corrupt(f"key length {kl} does not fit the record")
            if kl == -1:
                key = None
            else:
                key = PyBytes_FromStringAndSize(<const char *>(data + p), kl) if build else None
                p += kl
        vl = varint_fast(data, &p, limit, end, 5)
        if vl == -1:
            value = None
        elif vl < 0 or p + vl > end:
            raise corrupt(f"value length {vl} does not fit the record")
        else:
            value = PyBytes_FromStringAndSize(<const char *>(data + p), vl) if build else None
            p += vl
        b = at(data, p, limit)
        if b == 0:
            headers = ()
            p += 1
        else:
            headers = decode_headers(data, &p, end, build)
        if p != end:
            raise corrupt(f"record body is {ln} bytes but its fields use {ln - end + p}")
        if not 0 <= od <= last_delta:
            raise corrupt(f"record offset delta {od} outside the batch's 0..{last_delta}")
        if add_ovf(base_offset, od, &tmp):
            offobj = (<object>base_offset) + (<object>od)
            if offobj < min_offset:
                continue
        else:
            off = tmp
            if any_min or off < min_off:
                continue
            offobj = PyLong_FromLongLong(off)
        if not build:
            kept += 1
            continue
        ts = max_ts if log_append else add64(base_ts, tsd)
        rec = alloc_instance(cls, width) if fast else PyTuple_New(width)
        if width == 7:
            set_item(rec, 0, topic)
            set_item(rec, 1, part)
            set_item(rec, 2, offobj)
            set_item(rec, 3, ts)
            set_item(rec, 4, key)
            set_item(rec, 5, value)
            set_item(rec, 6, headers)
        else:
            set_item(rec, 0, offobj)
            set_item(rec, 1, ts)
            set_item(rec, 2, key)
            set_item(rec, 3, value)
            set_item(rec, 4, headers)
        out.append(rec if fast else tuple_new(cls, rec))
    if p != limit:
        raise corrupt(f"{limit - p} bytes left over after {count} records")
    return out if build else kept


def decode_records(data, h, min_offset=0, origin=None):
    """_decode_records of logq.codec.batch over the records section ``data`` (any buffer)."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return parse_records(<const uint8_t *>view.buf, view.len, h, min_offset, origin, True)
    finally:
        PyBuffer_Release(&view)


def walk_records(data, h, min_offset=0):
    """Check every record of the records section ``data`` as decode_records does, building
    nothing; returns how many records are at or above ``min_offset``."""
    cdef Py_buffer view
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        return parse_records(<const uint8_t *>view.buf, view.len, h, min_offset, None, False)
    finally:
        PyBuffer_Release(&view)


# --------------------------------------------------------------------------- encoding


cdef inline int varint_size(uint64_t z) noexcept nogil:
    cdef int n = 1
    while z >= 0x80:
        z >>= 7
        n += 1
    return n


cdef inline uint64_t zigzag(int64_t v) noexcept nogil:
    return (<uint64_t>v << 1) ^ <uint64_t>(v >> 63)


cdef inline uint8_t *put_varint(uint8_t *o, int64_t v) noexcept nogil:
    cdef uint64_t z = zigzag(v)
    while z >= 0x80:
        o[0] = <uint8_t>((z & 0x7F) | 0x80)
        o += 1
        z >>= 7
    o[0] = <uint8_t>z
    return o + 1


cdef struct Out:
    uint8_t *buf
    Py_ssize_t len
    Py_ssize_t cap


cdef int reserve(Out *o, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap
    cdef uint8_t *nb
    if o.len + more <= o.cap:
        return 0
    cap = o.cap * 2 if o.cap else 4096
    while cap < o.len + more:
        cap *= 2
    nb = <uint8_t *>realloc(o.buf, cap)
    if nb == NULL:
        raise MemoryError()
    o.buf = nb
    o.cap = cap
    return 0


cdef int write_varint(Out *o, int64_t v) except -1:
    reserve(o, 10)
    o.len = put_varint(o.buf + o.len, v) - o.buf
    return 0


cdef int write_bytes(Out *o, const uint8_t *src, Py_ssize_t n) except -1:
    reserve(o, n)
    memcpy(o.buf + o.len, src, n)
    o.len += n
    return 0


cdef int write_blob(Out *o, object obj, bint with_length) except -1:
    """A bytes-like ``obj`` (its length varint first when ``with_length``); TypeError for
    anything else, as ``bytes + obj`` raises in the pure codec."""
    cdef Py_buffer view
    if PyBytes_CheckExact(obj):
        if with_length:
            write_varint(o, PyBytes_GET_SIZE(obj))
        write_bytes(o, <const uint8_t *>PyBytes_AS_STRING(obj), PyBytes_GET_SIZE(obj))
        return 0
    if isinstance(obj, str):
        raise TypeError(f"can't concat str to bytes")
    PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE)
    try:
        if with_length:
            write_varint(o, view.len)
        write_bytes(o, <const uint8_t *>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)
    return 0


cdef int encode_headers(Out *o, object headers) except -1:
    cdef Out tmp
    cdef int64_t n = 0
    items = headers.items() if isinstance(headers, dict) else headers
    tmp.buf = NULL
    tmp.len = tmp.cap = 0
    try:
        for hk, hv in items:
            kb = hk.encode("utf-8") if isinstance(hk, str) else bytes(hk)
            write_blob(&tmp, kb, True)
            if hv is None:
                write_varint(&tmp, -1)
            else:
                write_blob(&tmp, hv, True)
            n += 1
        write_varint(o, n)
        write_bytes(o, tmp.buf, tmp.len)
    finally:
        free(tmp.buf)
    return 0


def encode_records(records, base_ts):
    """_encode_records of logq.codec.batch: the records section of a batch of
    ``(key, value, headers, timestamp_ms)`` tuples, offset deltas 0, 1, ..."""
    cdef Out o, body
    cdef int64_t bts, ts, d, i = 0
    cdef long long tmp
    cdef int ovf
    cdef Py_ssize_t start
    o.buf = body.buf = NULL
    o.len = o.cap = body.len = body.cap = 0
    cdef int bovf = 0
    seq = records if isinstance(records, (list, tuple)) else list(records)
    base_ts = index(base_ts)  # integers only, as the pure codec's varint encoder (numpy's too)
    bts = PyLong_AsLongLongAndOverflow(base_ts, &bovf)
    try:
        for key, value, headers, ts_obj in seq:
            # timestampDelta exactly as the pure codec: ts - base_ts, an int64 varlong
            ts_obj = index(ts_obj)
            ovf = 0
            ts = PyLong_AsLongLongAndOverflow(ts_obj, &ovf)
            if ovf == 0 and bovf == 0:
                if sub_ovf(ts, bts, &tmp):
                    raise OverflowError(f"{ts_obj - base_ts} does not fit a varlong")
                d = tmp
            else:
                delta = ts_obj - base_ts
                if not -(1 << 63) <= delta < (1 << 63):
                    raise OverflowError(f"{delta} does not fit a varlong")
                d = delta
            body.len = 0
            reserve(&body, 32)
            body.buf[0] = 0  # attributes
            body.len = 1
            write_varint(&body, d)
            write_varint(&body, i)
            if key is None:
                write_varint(&body, -1)
            else:
                write_blob(&body, key, True)
            if value is None:
                write_varint(&body, -1)
            else:
                write_blob(&body, value, True)
            if headers:
                encode_headers(&body, headers)
            else:
                write_varint(&body, 0)
            write_varint(&o, body.len)
            write_bytes(&o, body.buf, body.len)
            i += 1
        return PyBytes_FromStringAndSize(<const char *>o.buf, o.len)
    finally:
        free(o.buf)
        free(body.buf)


def encode_values(values, timestamp_obj, base_offset_obj, key, partition_leader_epoch_obj):
    """_encode_values of logq.codec.batch: a whole batch (header, CRC and records) of values
    sharing one key, one timestamp and no headers, written into one bytes object."""
    cdef Py_ssize_t n, i, klen = 0, vlen, total, p, fixed
    cdef int64_t records_bytes = 0, rec
    cdef Py_buffer view
    cdef const uint8_t *kp = NULL
    cdef uint8_t *o
    cdef Py_buffer kview
    cdef bint kheld = False
    # integers only (numpy's too), as the pure codec's struct.pack: TypeError or OverflowError
    cdef int64_t timestamp = index(timestamp_obj)
    cdef int64_t base_offset = index(base_offset_obj)
    cdef int partition_leader_epoch = index(partition_leader_epoch_obj)
    seq = values if isinstance(values, (list, tuple)) else list(values)
    n = len(seq)
    if key is not None:
        if isinstance(key, str):
            raise TypeError("can't concat str to bytes")
        PyObject_GetBuffer(key, &kview, PyBUF_SIMPLE)
        kheld = True
    try:
        if kheld:
            klen = kview.len
            kp = <const uint8_t *>kview.buf
        # fixed part of each record: attributes, timestampDelta 0, key, header count
        fixed = 2 + (varint_size(zigzag(klen)) + klen if kheld else 1) + 1
        # pass 1: sizes (and the TypeError a non-bytes value raises in the pure codec)
        for i in range(n):
            v = seq[i]
            if PyBytes_CheckExact(v):
                vlen = PyBytes_GET_SIZE(v)
            else:
                if isinstance(v, str):
                    raise TypeError("%b requires a bytes-like object, not 'str'")
                PyObject_GetBuffer(v, &view, PyBUF_SIMPLE)
                vlen = view.len
                PyBuffer_Release(&view)
            rec = fixed + varint_size(zigzag(i)) + varint_size(zigzag(vlen)) + vlen
            records_bytes += varint_size(zigzag(rec)) + rec
            if records_bytes > 0x7FFFFFFF:
                raise OverflowError("the batch does not fit an int32 length")
        total = BATCH_OVERHEAD + records_bytes
        out = PyBytes_FromStringAndSize(NULL, total)
        o = <uint8_t *>PyBytes_AS_STRING_MUT(out)
        put64(o, base_offset)
        put32(o + 8, total - LOG_OVERHEAD)
        put32(o + 12, partition_leader_epoch)
        o[16] = MAGIC
        put16(o + 21, 0)
        put32(o + 23, n - 1)
        put64(o + 27, timestamp)
        put64(o + 35, timestamp)
        put64(o + 43, -1)
        put16(o + 51, -1)
        put32(o + 53, -1)
        put32(o + 57, n)
        p = BATCH_OVERHEAD
        # pass 2: the records; every length is re-read and checked against pass 1's total
        for i in range(n):
            v = seq[i]
            PyObject_GetBuffer(v, &view, PyBUF_SIMPLE)
            try:
                vlen = view.len
                rec = fixed + varint_size(zigzag(i)) + varint_size(zigzag(vlen)) + vlen
                if p + varint_size(zigzag(rec)) + rec > total:
                    raise RuntimeError("a value changed size while the batch was encoded")
                p = put_varint(o + p, rec) - o
                o[p] = 0
                o[p + 1] = 0
                p = put_varint(o + p + 2, i) - o
                if kheld:
                    p = put_varint(o + p, klen) - o
                    memcpy(o + p, kp, klen)
                    p += klen
                else:
                    o[p] = 1
                    p += 1
                p = put_varint(o + p, vlen) - o
                memcpy(o + p, view.buf, vlen)
                p += vlen
                o[p] = 0
                p += 1
            finally:
                PyBuffer_Release(&view)
        if p != total:
            raise RuntimeError("a value changed size while the batch was encoded")
        put32(o + CRC_OFFSET, crc32c(memoryview(out)[CRC_START:]))
        return out
    finally:
        if kheld:
            PyBuffer_Release(&kview)
