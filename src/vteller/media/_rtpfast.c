/* Native per-packet work of the forwarding path (see forward.py and passthrough.py).
 *
 * Rewriter: forward.Rewriter's mapping of (SSRC, sequence number, timestamp) onto one
 * continuous outbound stream, the same rules in C.
 * Writer: passthrough._RtpWriter's serialization of a forwarded packet (one-byte
 * header extensions: MID, abs-send-time, audio level), kept in a retransmission
 * history, counted for the sender's reports, and protected in place with libsrtp's
 * srtp_protect reached through the function pointer pylibsrtp's cffi binding gives
 * (the same srtp_t session aiortc protects with; nothing is linked here).
 *
 * Everything runs on the event loop's thread, as aiortc's own use of the session does.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define SEQ_MOD 65536u
#define HALF 32768u
#define SLIDE 16384u
#define MIN_STEP_S 0.02
#define HISTORY 128 /* aiortc's RTP_HISTORY_SIZE */
#define SRTP_TRAILER 144 /* SRTP_MAX_TAG_LEN + SRTP_MAX_MKI_LEN, as pylibsrtp reserves */
#define NTP_EPOCH_S 2208988800ull

typedef int (*protect_fn)(void *srtp, void *header, int *length);

/* ------------------------------------------------------------------ Rewriter */

typedef struct {
    PyObject_HEAD
    double clock;
    int needs_keyframe;
    int has_ssrc;
    uint32_t ssrc;
    uint16_t base, seq_offset;
    uint32_t ts_offset;
    int has_last;
    uint16_t last_seq;
    uint32_t last_ts;
    double last_at;
    int waiting;
} Rewriter;

static int rewriter_init(Rewriter *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"clock_rate_hz", "needs_keyframe", NULL};
    int clock, needs;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ip", kwlist, &clock, &needs)) return -1;
    if (clock <= 0) {
        PyErr_SetString(PyExc_ValueError, "clock rate must be positive");
        return -1;
    }
    self->clock = clock;
    self->needs_keyframe = needs;
    self->has_ssrc = self->has_last = 0;
    self->base = self->seq_offset = 0;
    self->ts_offset = 0;
    self->waiting = 1;
    return 0;
}

/* 1 and the mapped numbers, or 0 for a packet that is not sent */
static int rewriter_map(Rewriter *r, uint32_t ssrc, uint16_t seq, uint32_t ts, int keyframe,
                        double now, uint16_t *out_seq, uint32_t *out_ts) {
    if (r->waiting || !r->has_ssrc || ssrc != r->ssrc) {
        if (r->needs_keyframe && !keyframe) {
            r->waiting = 1;
            return 0;
        }
        if (r->has_last) {
            r->seq_offset = (uint16_t)(r->last_seq + 1 - seq);
            double gap = now - r->last_at;
            if (gap < MIN_STEP_S) gap = MIN_STEP_S;
            /* Python's round(): half to even, as nearbyint in the default mode */
            double step = nearbyint(gap * r->clock);
            uint32_t step32 = (uint32_t)(uint64_t)fmod(step, 4294967296.0);
            r->ts_offset = r->last_ts + step32 - ts;
        }
        r->ssrc = ssrc;
        r->has_ssrc = 1;
        r->base = seq;
        r->waiting = 0;
    }
    uint16_t ahead = (uint16_t)(seq - r->base);
    if (ahead >= HALF) return 0; /* sent before this segment began */
    if (ahead >= SLIDE) r->base = (uint16_t)(r->base + SLIDE / 2);
    *out_seq = (uint16_t)(seq + r->seq_offset);
    *out_ts = ts + r->ts_offset;
    uint16_t newer = (uint16_t)(*out_seq - r->last_seq);
    if (!r->has_last || (0 < newer && newer < HALF)) {
        r->has_last = 1;
        r->last_seq = *out_seq;
        r->last_ts = *out_ts;
        r->last_at = now;
    }
    return 1;
}

static int as_u32(PyObject *o, uint32_t *out, const char *what) {
    unsigned long v = PyLong_AsUnsignedLong(o);
    if (v == (unsigned long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be an int in 0..2**32-1", what);
        return -1;
    }
    if (v > 0xFFFFFFFFul) {
        PyErr_Format(PyExc_ValueError, "%s must be an int in 0..2**32-1", what);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int as_u16(PyObject *o, uint16_t *out, const char *what) {
    uint32_t v;
    if (as_u32(o, &v, what) < 0) return -1;
    if (v > 0xFFFF) {
        PyErr_Format(PyExc_ValueError, "%s must be an int in 0..65535", what);
        return -1;
    }
    *out = (uint16_t)v;
    return 0;
}

static PyObject *Rewriter_map(Rewriter *self, PyObject *const *args, Py_ssize_t nargs) {
    uint32_t ssrc, ts;
    uint16_t seq, out_seq;
    uint32_t out_ts;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "map(ssrc, seq, ts, starts_keyframe, now)");
        return NULL;
    }
    if (as_u32(args[0], &ssrc, "ssrc") < 0 || as_u16(args[1], &seq, "seq") < 0 ||
        as_u32(args[2], &ts, "ts") < 0)
        return NULL;
    int keyframe = PyObject_IsTrue(args[3]);
    if (keyframe < 0) return NULL;
    double now = PyFloat_AsDouble(args[4]);
    if (now == -1.0 && PyErr_Occurred()) return NULL;
    if (!rewriter_map(self, ssrc, seq, ts, keyframe, now, &out_seq, &out_ts)) Py_RETURN_NONE;
    return Py_BuildValue("(Hk)", out_seq, (unsigned long)out_ts);
}

static PyObject *Rewriter_pause(Rewriter *self, PyObject *unused) {
    self->waiting = 1;
    Py_RETURN_NONE;
}

static PyObject *Rewriter_get_waiting(Rewriter *self, void *closure) {
    return PyBool_FromLong(self->waiting);
}

static int Rewriter_set_waiting(Rewriter *self, PyObject *value, void *closure) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "waiting cannot be deleted");
        return -1;
    }
    int w = PyObject_IsTrue(value);
    if (w < 0) return -1;
    self->waiting = w;
    return 0;
}

static PyMethodDef Rewriter_methods[] = {
    {"map", (PyCFunction)(void (*)(void))Rewriter_map, METH_FASTCALL,
     "map(ssrc, seq, ts, starts_keyframe, now) -> (seq, ts) or None"},
    {"pause", (PyCFunction)Rewriter_pause, METH_NOARGS,
     "The next packet starts a new segment (video: at a keyframe)."},
    {NULL}};

static PyGetSetDef Rewriter_getset[] = {
    {"waiting", (getter)Rewriter_get_waiting, (setter)Rewriter_set_waiting,
     "the next packet from any source starts a new segment", NULL},
    {NULL}};

static PyTypeObject RewriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vteller.media._rtpfast.Rewriter",
    .tp_basicsize = sizeof(Rewriter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "forward.Rewriter in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)rewriter_init,
    .tp_methods = Rewriter_methods,
    .tp_getset = Rewriter_getset,
};

/* -------------------------------------------------------------------- Writer */

typedef struct {
    PyObject_HEAD
    uint32_t ssrc;
    uint8_t payload_type;
    uint8_t mid[18]; /* the MID element: id/length byte and value */
    int mid_len;
    int abs_id, level_id;
    protect_fn protect;
    PyObject *history[HISTORY]; /* serialized (unprotected) packets by seq % HISTORY */
    uint8_t *buffer;
    Py_ssize_t capacity;
    /* what the sender's reports say (RTCP SR) */
    unsigned long long ntp_timestamp;
    unsigned long rtp_timestamp;
    unsigned long long octets, packets;
} Writer;

static int writer_init(Writer *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"ssrc", "payload_type", "mid_element", "abs_send_time_id",
                             "audio_level_id", "protect", NULL};
    unsigned long ssrc;
    int pt, abs_id, level_id;
    Py_buffer mid;
    unsigned long long protect;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "kiy*iiK", kwlist, &ssrc, &pt, &mid,
                                     &abs_id, &level_id, &protect))
        return -1;
    int bad = ssrc > 0xFFFFFFFFul || pt < 0 || pt > 127 || mid.len > 17 ||
              abs_id < 0 || abs_id > 14 || level_id < 0 || level_id > 14 || protect == 0;
    if (!bad) {
        memcpy(self->mid, mid.buf, mid.len);
        self->mid_len = (int)mid.len;
    }
    PyBuffer_Release(&mid);
    if (bad) {
        PyErr_SetString(PyExc_ValueError,
                        "ssrc 0..2**32-1, payload type 0..127, a MID element of at most 17 "
                        "bytes, extension ids 0..14 and a protect function are needed");
        return -1;
    }
    self->ssrc = (uint32_t)ssrc;
    self->payload_type = (uint8_t)pt;
    self->abs_id = abs_id;
    self->level_id = level_id;
    self->protect = (protect_fn)(uintptr_t)protect;
    return 0;
}

static void writer_dealloc(Writer *self) {
    for (int i = 0; i < HISTORY; i++) Py_CLEAR(self->history[i]);
    PyMem_Free(self->buffer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int reserve(Writer *self, Py_ssize_t size) {
    if (size <= self->capacity) return 0;
    uint8_t *grown = PyMem_Realloc(self->buffer, size);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->buffer = grown;
    self->capacity = size;
    return 0;
}

static void put16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* write(payload, seq, ts, marker, padding_size, audio_level, srtp) -> datagram
 * audio_level: None or (voice: bool, level: int); srtp: the srtp_t's address, or 0 for
 * the serialized packet unprotected (for a send path that protects it itself). */
static PyObject *Writer_write(Writer *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer payload;
    uint16_t seq;
    uint32_t ts;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "write(payload, seq, ts, marker, padding_size, audio_level, srtp)");
        return NULL;
    }
    if (as_u16(args[1], &seq, "seq") < 0 || as_u32(args[2], &ts, "ts") < 0) return NULL;
    int marker = PyObject_IsTrue(args[3]);
    if (marker < 0) return NULL;
    long padding = PyLong_AsLong(args[4]);
    if (padding == -1 && PyErr_Occurred()) return NULL;
    if (padding < 0 || padding > 255) {
        PyErr_SetString(PyExc_ValueError, "padding_size must be in 0..255");
        return NULL;
    }
    int has_level = 0, voice = 0;
    long level = 0;
    if (args[5] != Py_None) {
        if (!PyTuple_Check(args[5]) || PyTuple_GET_SIZE(args[5]) != 2) {
            PyErr_SetString(PyExc_ValueError, "audio_level must be None or (voice, level)");
            return NULL;
        }
        voice = PyObject_IsTrue(PyTuple_GET_ITEM(args[5], 0));
        if (voice < 0) return NULL;
        level = PyLong_AsLong(PyTuple_GET_ITEM(args[5], 1));
        if (level == -1 && PyErr_Occurred()) return NULL;
        has_level = 1;
    }
    unsigned long long srtp = PyLong_AsUnsignedLongLong(args[6]);
    if (srtp == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    if (self->protect == NULL) {
        PyErr_SetString(PyExc_ValueError, "Writer was not initialised");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &payload, PyBUF_SIMPLE) < 0) return NULL;

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    /* 32.32 NTP time, as aiortc's clock.current_ntp_time() */
    unsigned long long ntp = ((unsigned long long)now.tv_sec + NTP_EPOCH_S) << 32 |
                             (unsigned long long)(((double)now.tv_nsec / 1e9) * 4294967296.0);
    uint32_t abs_send_time = (uint32_t)(ntp >> 14) & 0x00FFFFFF;

    uint8_t block[32];
    int n = 0;
    memcpy(block, self->mid, self->mid_len);
    n = self->mid_len;
    if (self->abs_id) {
        block[n++] = (uint8_t)(self->abs_id << 4 | 2);
        block[n++] = (uint8_t)(abs_send_time >> 16);
        block[n++] = (uint8_t)(abs_send_time >> 8);
        block[n++] = (uint8_t)abs_send_time;
    }
    if (self->level_id && has_level) {
        block[n++] = (uint8_t)(self->level_id << 4);
        block[n++] = (uint8_t)((voice ? 0x80 : 0) | (level & 0x7F));
    }
    while (n % 4) block[n++] = 0;
    Py_ssize_t head = 12 + (n ? 4 + n : 0);
    Py_ssize_t size = head + payload.len + padding;
    if (size > INT_MAX - SRTP_TRAILER || reserve(self, size + SRTP_TRAILER) < 0) {
        PyBuffer_Release(&payload);
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "packet is too long");
        return NULL;
    }
    uint8_t *p = self->buffer;
    p[0] = (uint8_t)((n ? 0x90 : 0x80) | (padding > 0) << 5);
    p[1] = (uint8_t)(marker << 7 | self->payload_type);
    put16(p + 2, seq);
    put32(p + 4, ts);
    put32(p + 8, self->ssrc);
    if (n) {
        put16(p + 12, 0xBEDE);
        put16(p + 14, (uint32_t)(n / 4));
        memcpy(p + 16, block, n);
    }
    memcpy(p + head, payload.buf, payload.len);
    if (padding) {
        memset(p + head + payload.len, 0, padding - 1);
        p[size - 1] = (uint8_t)padding;
    }
    PyBuffer_Release(&payload);

    PyObject *plain = PyBytes_FromStringAndSize((const char *)p, size);
    if (plain == NULL) return NULL;
    Py_XSETREF(self->history[seq % HISTORY], plain);
    self->ntp_timestamp = ntp;
    self->rtp_timestamp = ts;
    self->octets += (unsigned long long)(size - head - padding);
    self->packets += 1;
    if (srtp == 0) return Py_NewRef(plain);
    int length = (int)size;
    int status = self->protect((void *)(uintptr_t)srtp, p, &length);
    if (status != 0) {
        PyErr_Format(PyExc_RuntimeError, "srtp_protect failed (status %d)", status);
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)p, length);
}

static PyObject *Writer_sent(Writer *self, PyObject *arg) {
    uint16_t seq;
    if (as_u16(arg, &seq, "seq") < 0) return NULL;
    PyObject *packet = self->history[seq % HISTORY];
    if (packet == NULL) Py_RETURN_NONE;
    return Py_NewRef(packet);
}

static PyMethodDef Writer_methods[] = {
    {"write", (PyCFunction)(void (*)(void))Writer_write, METH_FASTCALL,
     "write(payload, seq, ts, marker, padding_size, audio_level, srtp) -> bytes"},
    {"sent", (PyCFunction)Writer_sent, METH_O,
     "sent(index) -> the packet last written at history index seq % 128, or None"},
    {NULL}};

static PyMemberDef Writer_members[] = {
    {"ntp_timestamp", T_ULONGLONG, offsetof(Writer, ntp_timestamp), READONLY, NULL},
    {"rtp_timestamp", T_ULONG, offsetof(Writer, rtp_timestamp), READONLY, NULL},
    {"octets", T_ULONGLONG, offsetof(Writer, octets), READONLY, NULL},
    {"packets", T_ULONGLONG, offsetof(Writer, packets), READONLY, NULL},
    {NULL}};

static PyTypeObject WriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vteller.media._rtpfast.Writer",
    .tp_basicsize = sizeof(Writer),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "passthrough._RtpWriter with history, counters and SRTP protection, in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)writer_init,
    .tp_dealloc = (destructor)writer_dealloc,
    .tp_methods = Writer_methods,
    .tp_members = Writer_members,
};


/* ----------------------------------------------------------------- Estimator */
/* aiortc's RemoteBitrateEstimator (rate.py: abs-send-time inter-arrival filter, Kalman
 * overuse estimator, overuse detector, AIMD rate control; adapted there from
 * webrtc.org), with its incoming-rate counter as passthrough._QuickerRateCounter, the
 * same operations in the same order on doubles: the same answers (tested against it). */

#define INTER_ARRIVAL_SHIFT 26
#define TIMESTAMP_TO_MS (1000.0 / (double)(1 << INTER_ARRIVAL_SHIFT))
#define GROUP_LENGTH ((5 << INTER_ARRIVAL_SHIFT) / 1000)
#define BURST_DELTA_THRESHOLD_MS 5
#define MAX_ADAPT_OFFSET_MS 15
#define MIN_NUM_DELTAS 60
#define DELTA_COUNTER_MAX 1000
#define MIN_FRAME_PERIOD_HISTORY 60
#define RATE_WINDOW_MS 1000
#define RATE_SCALE 8000
#define FEEDBACK_INTERVAL_MS 500

enum { NORMAL = 0, UNDERUSING = 1, OVERUSING = 2 };
enum { HOLD = 0, INCREASE = 1, DECREASE = 2 };

typedef struct {
    int has_group, has_previous;
    uint32_t first_ts, last_ts, prev_last_ts;
    long long arrival, prev_arrival, size, prev_size;
} InterArrival;

typedef struct {
    long long *ms, *bytes; /* ring of (arrival ms, bytes), oldest at head */
    Py_ssize_t head, count, capacity;
    int has_origin;
    long long origin_ms, total_count, total_value;
} RateCounter;

typedef struct {
    PyObject_HEAD
    /* incoming bitrate */
    RateCounter rate;
    int rate_initialized;
    InterArrival ia;
    /* overuse estimator */
    double E[2][2], slope, offset, previous_offset, avg_noise, var_noise;
    int num_of_deltas;
    double ts_hist[MIN_FRAME_PERIOD_HISTORY];
    int ts_hist_len, ts_hist_head;
    /* overuse detector */
    int hypothesis, has_detector_update, has_overuse_time, overuse_counter;
    long long detector_update_ms;
    double overuse_time, detector_previous_offset, threshold;
    /* AIMD rate control */
    int has_avg_max, initialized, has_first_throughput, has_last_change, near_max, state;
    double avg_max_kbps, var_max_kbps;
    long long current_bitrate, first_throughput_ms, last_change_ms, latest_throughput;
    long long rtt;
    /* estimator */
    int has_last_update;
    long long last_update_ms;
    PyObject *ssrcs; /* dict: SSRC -> last arrival, in first-seen order */
} Estimator;

static void rate_reset(RateCounter *r) {
    r->head = r->count = 0;
    r->has_origin = 0;
    r->total_count = r->total_value = 0;
}

static void rate_erase_old(RateCounter *r, long long now_ms) {
    long long new_origin = now_ms - RATE_WINDOW_MS + 1;
    if (!r->has_origin || r->origin_ms >= new_origin) return;
    while (r->count && r->ms[r->head] < new_origin) {
        r->total_count -= 1;
        r->total_value -= r->bytes[r->head];
        r->head = (r->head + 1) % r->capacity;
        r->count -= 1;
    }
    r->origin_ms = new_origin;
}

static int rate_add(RateCounter *r, long long value, long long now_ms) {
    if (!r->has_origin) {
        r->has_origin = 1;
        r->origin_ms = now_ms;
    } else {
        rate_erase_old(r, now_ms);
    }
    if (r->count == r->capacity) { /* grow, keeping the order */
        Py_ssize_t grown = r->capacity ? r->capacity * 2 : 256;
        long long *ms = PyMem_Malloc(grown * sizeof(long long));
        long long *bytes = PyMem_Malloc(grown * sizeof(long long));
        if (ms == NULL || bytes == NULL) {
            PyMem_Free(ms);
            PyMem_Free(bytes);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < r->count; i++) {
            ms[i] = r->ms[(r->head + i) % r->capacity];
            bytes[i] = r->bytes[(r->head + i) % r->capacity];
        }
        PyMem_Free(r->ms);
        PyMem_Free(r->bytes);
        r->ms = ms;
        r->bytes = bytes;
        r->head = 0;
        r->capacity = grown;
    }
    Py_ssize_t tail = (r->head + r->count) % r->capacity;
    r->ms[tail] = now_ms;
    r->bytes[tail] = value;
    r->count += 1;
    r->total_count += 1;
    r->total_value += value;
    return 0;
}

/* 1 and the rate, or 0 for None */
static int rate_rate(RateCounter *r, long long now_ms, long long *out) {
    if (r->has_origin) {
        rate_erase_old(r, now_ms);
        long long active = now_ms - r->origin_ms + 1;
        if (r->total_count > 0 && active > 1) {
            *out = (long long)nearbyint((double)(RATE_SCALE * r->total_value) / (double)active);
            return 1;
        }
    }
    return 0;
}

static int estimator_init(Estimator *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "", kwlist)) return -1;
    rate_reset(&self->rate);
    self->rate_initialized = 1;
    memset(&self->ia, 0, sizeof(self->ia));
    self->E[0][0] = 100.0;
    self->E[0][1] = self->E[1][0] = 0.0;
    self->E[1][1] = 0.1;
    self->slope = 1.0 / 64;
    self->offset = self->previous_offset = self->avg_noise = 0.0;
    self->var_noise = 50.0;
    self->num_of_deltas = 0;
    self->ts_hist_len = self->ts_hist_head = 0;
    self->hypothesis = NORMAL;
    self->has_detector_update = self->has_overuse_time = self->overuse_counter = 0;
    self->overuse_time = self->detector_previous_offset = 0.0;
    self->threshold = 12.5;
    self->has_avg_max = self->initialized = self->has_first_throughput = 0;
    self->has_last_change = self->near_max = 0;
    self->state = HOLD;
    self->var_max_kbps = 0.4;
    self->current_bitrate = self->latest_throughput = 30000000;
    self->rtt = 200;
    self->has_last_update = 0;
    Py_XSETREF(self->ssrcs, PyDict_New());
    return self->ssrcs == NULL ? -1 : 0;
}

static void estimator_dealloc(Estimator *self) {
    PyMem_Free(self->rate.ms);
    PyMem_Free(self->rate.bytes);
    Py_CLEAR(self->ssrcs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* InterArrival.compute_deltas: 1 and the deltas, or 0 */
static int inter_arrival(InterArrival *g, uint32_t ts, long long arrival, long long size,
                         uint32_t *d_ts, long long *d_arrival, long long *d_size) {
    int deltas = 0;
    if (!g->has_group) {
        g->has_group = 1;
        g->first_ts = g->last_ts = ts;
        g->size = 0;
    } else if ((uint32_t)(ts - g->first_ts) >= 0x80000000u) {
        return 0; /* out of order */
    } else {
        /* belongs_to_burst */
        uint32_t burst_ts = ts - g->last_ts;
        long long burst_ts_ms = (long long)nearbyint(TIMESTAMP_TO_MS * (double)burst_ts);
        long long burst_arrival = arrival - g->arrival;
        int burst = burst_ts_ms == 0 || ((burst_arrival - burst_ts_ms) < 0 &&
                                         burst_arrival <= BURST_DELTA_THRESHOLD_MS);
        if (!burst && (uint32_t)(ts - g->first_ts) > GROUP_LENGTH) { /* a new group */
            if (g->has_previous) {
                *d_ts = g->last_ts - g->prev_last_ts;
                *d_arrival = g->arrival - g->prev_arrival;
                *d_size = g->size - g->prev_size;
                deltas = 1;
            }
            g->has_previous = 1;
            g->prev_last_ts = g->last_ts;
            g->prev_arrival = g->arrival;
            g->prev_size = g->size;
            g->first_ts = g->last_ts = ts;
            g->size = 0;
        } else {
            uint32_t ahead = ts - g->last_ts; /* uint32_gt(ts, last) */
            if (ahead != 0 && ahead < 0x80000000u) g->last_ts = ts;
        }
    }
    g->size += size;
    g->arrival = arrival;
    return deltas;
}

static double min_frame_period(Estimator *e, double ts_delta) {
    double shortest = ts_delta;
    if (e->ts_hist_len >= MIN_FRAME_PERIOD_HISTORY) { /* drop the oldest */
        e->ts_hist_head = (e->ts_hist_head + 1) % MIN_FRAME_PERIOD_HISTORY;
        e->ts_hist_len -= 1;
    }
    for (int i = 0; i < e->ts_hist_len; i++) {
        double old = e->ts_hist[(e->ts_hist_head + i) % MIN_FRAME_PERIOD_HISTORY];
        if (old < shortest) shortest = old;
    }
    e->ts_hist[(e->ts_hist_head + e->ts_hist_len) % MIN_FRAME_PERIOD_HISTORY] = ts_delta;
    e->ts_hist_len += 1;
    return shortest;
}

static void update_noise(Estimator *e, double residual, double ts_delta) {
    double alpha = e->num_of_deltas > 10 * 30 ? 0.002 : 0.01;
    double beta = pow(1 - alpha, ts_delta * 30.0 / 1000.0);
    e->avg_noise = beta * e->avg_noise + (1 - beta) * residual;
    e->var_noise = beta * e->var_noise + (1 - beta) * pow(e->avg_noise - residual, 2.0);
    if (e->var_noise < 1) e->var_noise = 1;
}

static void overuse_update(Estimator *e, long long time_delta_ms, double ts_delta_ms,
                           long long size_delta, int hypothesis) {
    double period = min_frame_period(e, ts_delta_ms);
    double t_ts_delta = (double)time_delta_ms - ts_delta_ms;
    double h0 = (double)size_delta, h1 = 1.0;
    e->num_of_deltas = e->num_of_deltas + 1 < DELTA_COUNTER_MAX ? e->num_of_deltas + 1
                                                                : DELTA_COUNTER_MAX;
    e->E[0][0] += 1e-13;
    e->E[1][1] += 1e-3;
    if ((hypothesis == OVERUSING && e->offset < e->previous_offset) ||
        (hypothesis == UNDERUSING && e->offset > e->previous_offset))
        e->E[1][1] += 10 * 1e-3;
    double Eh0 = e->E[0][0] * h0 + e->E[0][1] * h1;
    double Eh1 = e->E[1][0] * h0 + e->E[1][1] * h1;
    double residual = t_ts_delta - e->slope * h0 - e->offset;
    if (hypothesis == NORMAL) {
        double max_residual = 3.0 * sqrt(e->var_noise);
        if (fabs(residual) < max_residual)
            update_noise(e, residual, period);
        else
            update_noise(e, residual < 0 ? -max_residual : max_residual, period);
    }
    double denom = e->var_noise + h0 * Eh0 + h1 * Eh1;
    double K0 = Eh0 / denom, K1 = Eh1 / denom;
    double IKh00 = 1.0 - K0 * h0, IKh01 = -K0 * h1, IKh10 = -K1 * h0, IKh11 = 1.0 - K1 * h1;
    double e00 = e->E[0][0], e01 = e->E[0][1];
    e->E[0][0] = e00 * IKh00 + e->E[1][0] * IKh01;
    e->E[0][1] = e01 * IKh00 + e->E[1][1] * IKh01;
    e->E[1][0] = e00 * IKh10 + e->E[1][0] * IKh11;
    e->E[1][1] = e01 * IKh10 + e->E[1][1] * IKh11;
    e->previous_offset = e->offset;
    e->slope += K0 * residual;
    e->offset += K1 * residual;
}

static void update_threshold(Estimator *e, double modified_offset, long long now_ms) {
    if (!e->has_detector_update) {
        e->has_detector_update = 1;
        e->detector_update_ms = now_ms;
    }
    if (fabs(modified_offset) > e->threshold + MAX_ADAPT_OFFSET_MS) {
        e->detector_update_ms = now_ms;
        return;
    }
    double k = fabs(modified_offset) < e->threshold ? 0.039 : 0.0087;
    long long time_delta_ms = now_ms - e->detector_update_ms;
    if (time_delta_ms > 100) time_delta_ms = 100;
    e->threshold += k * (fabs(modified_offset) - e->threshold) * (double)time_delta_ms;
    if (e->threshold > 600) e->threshold = 600;
    if (e->threshold < 6) e->threshold = 6;
    e->detector_update_ms = now_ms;
}

static void detect(Estimator *e, double ts_delta_ms, long long now_ms) {
    if (e->num_of_deltas < 2) {
        e->hypothesis = NORMAL; /* aiortc returns NORMAL and keeps its state */
        return;
    }
    double offset = e->offset;
    double T = (double)(e->num_of_deltas < MIN_NUM_DELTAS ? e->num_of_deltas : MIN_NUM_DELTAS) *
               offset;
    if (T > e->threshold) {
        if (!e->has_overuse_time) {
            e->has_overuse_time = 1;
            e->overuse_time = ts_delta_ms / 2;
        } else {
            e->overuse_time += ts_delta_ms;
        }
        e->overuse_counter += 1;
        if (e->overuse_time > 10 && e->overuse_counter > 1 &&
            offset >= e->detector_previous_offset) {
            e->overuse_counter = 0;
            e->overuse_time = 0;
            e->hypothesis = OVERUSING;
        }
    } else if (T < -e->threshold) {
        e->overuse_counter = 0;
        e->has_overuse_time = 0;
        e->hypothesis = UNDERUSING;
    } else {
        e->overuse_counter = 0;
        e->has_overuse_time = 0;
        e->hypothesis = NORMAL;
    }
    e->detector_previous_offset = offset;
    update_threshold(e, T, now_ms);
}

static long long clamp_bitrate(Estimator *e, long long bitrate, long long throughput) {
    long long max_bitrate = (long long)(1.5 * (double)throughput) + 10000;
    if (max_bitrate < e->current_bitrate) max_bitrate = e->current_bitrate;
    return bitrate < max_bitrate ? bitrate : max_bitrate;
}

static void update_max_throughput(Estimator *e, double kbps) {
    double alpha = 0.05;
    if (!e->has_avg_max) {
        e->has_avg_max = 1;
        e->avg_max_kbps = kbps;
    } else {
        e->avg_max_kbps = (1 - alpha) * e->avg_max_kbps + alpha * kbps;
    }
    double norm = e->avg_max_kbps > 1 ? e->avg_max_kbps : 1;
    e->var_max_kbps = (1 - alpha) * e->var_max_kbps +
                      alpha * pow(e->avg_max_kbps - kbps, 2.0) / norm;
    if (e->var_max_kbps > 2.5) e->var_max_kbps = 2.5;
    if (e->var_max_kbps < 0.4) e->var_max_kbps = 0.4;
}

/* AimdRateControl.update: 1 and the bitrate, or 0 for None */
static int rate_control(Estimator *e, int usage, int has_throughput, long long throughput,
                        long long now_ms, long long *out) {
    if (!e->initialized && has_throughput) {
        if (!e->has_first_throughput) {
            e->has_first_throughput = 1;
            e->first_throughput_ms = now_ms;
        } else if (now_ms - e->first_throughput_ms > 3000) {
            e->current_bitrate = throughput;
            e->initialized = 1;
        }
    }
    if (!e->initialized && usage != OVERUSING) return 0;
    if (usage == NORMAL && e->state == HOLD) {
        e->has_last_change = 1;
        e->last_change_ms = now_ms;
        e->state = INCREASE;
    } else if (usage == OVERUSING) {
        e->state = DECREASE;
    } else if (usage == UNDERUSING) {
        e->state = HOLD;
    }
    long long new_bitrate = e->current_bitrate;
    if (has_throughput)
        e->latest_throughput = throughput;
    else
        throughput = e->latest_throughput;
    double kbps = (double)throughput / 1000;
    if (e->state == INCREASE) {
        if (e->has_avg_max) {
            double sigma = sqrt(e->var_max_kbps * e->avg_max_kbps);
            if (kbps >= e->avg_max_kbps + 3 * sigma) {
                e->near_max = 0;
                e->has_avg_max = 0;
            }
        }
        if (e->near_max) { /* additive */
            double bits_per_frame = (double)e->current_bitrate / 30;
            double packets_per_frame = ceil(bits_per_frame / (8 * 1200));
            double avg_packet_bits = packets_per_frame > 0 ? bits_per_frame / packets_per_frame
                                                           : 0.0;
            long long response_ms = e->rtt + 100;
            long long near_max_increase = (long long)((avg_packet_bits * 1000) /
                                                      (double)response_ms);
            if (near_max_increase < 4000) near_max_increase = 4000;
            new_bitrate += (long long)((double)((now_ms - e->last_change_ms) *
                                                near_max_increase) / 1000);
        } else { /* multiplicative */
            double alpha = 1.08;
            if (e->has_last_change) {
                long long elapsed = now_ms - e->last_change_ms;
                if (elapsed > 1000) elapsed = 1000;
                alpha = pow(alpha, (double)elapsed / 1000);
            }
            double increase = (alpha - 1) * (double)new_bitrate;
            new_bitrate += increase >= 1000 ? (long long)increase : 1000;
        }
        e->has_last_change = 1;
        e->last_change_ms = now_ms;
    } else if (e->state == DECREASE) {
        if (e->has_avg_max) {
            double sigma = sqrt(e->var_max_kbps * e->avg_max_kbps);
            if (kbps < e->avg_max_kbps - 3 * sigma) e->has_avg_max = 0;
        }
        update_max_throughput(e, kbps);
        e->near_max = 1;
        new_bitrate = (long long)nearbyint(0.85 * (double)throughput);
        e->has_last_change = 1;
        e->last_change_ms = now_ms;
        e->state = HOLD;
    }
    e->current_bitrate = clamp_bitrate(e, new_bitrate, throughput);
    *out = e->current_bitrate;
    return 1;
}

/* add(arrival_time_ms, abs_send_time, payload_size, ssrc) -> (bitrate, [ssrc...]) or None */
static PyObject *Estimator_add(Estimator *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "add(arrival_time_ms, abs_send_time, payload_size, ssrc)");
        return NULL;
    }
    long long arrival = PyLong_AsLongLong(args[0]);
    if (arrival == -1 && PyErr_Occurred()) return NULL;
    uint32_t abs_send_time, ssrc;
    if (as_u32(args[1], &abs_send_time, "abs_send_time") < 0 ||
        as_u32(args[3], &ssrc, "ssrc") < 0)
        return NULL;
    if (abs_send_time > 0xFFFFFF) {
        PyErr_SetString(PyExc_ValueError, "abs_send_time must be an int in 0..2**24-1");
        return NULL;
    }
    long long size = PyLong_AsLongLong(args[2]);
    if (size == -1 && PyErr_Occurred()) return NULL;
    if (size < 0 || size > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "payload_size must be in 0..2**24");
        return NULL;
    }
    uint32_t timestamp = abs_send_time << 8;
    if (self->ssrcs == NULL) {
        PyErr_SetString(PyExc_ValueError, "Estimator was not initialised");
        return NULL;
    }
    if (PyDict_SetItem(self->ssrcs, args[3], args[0]) < 0) return NULL;

    long long rate;
    if (rate_rate(&self->rate, arrival, &rate)) {
        self->rate_initialized = 1;
    } else if (self->rate_initialized) {
        rate_reset(&self->rate);
        self->rate_initialized = 0;
    }
    if (rate_add(&self->rate, size, arrival) < 0) return NULL;

    uint32_t d_ts;
    long long d_arrival, d_size;
    if (inter_arrival(&self->ia, timestamp, arrival, size, &d_ts, &d_arrival, &d_size)) {
        double ts_delta_ms = (double)d_ts * TIMESTAMP_TO_MS;
        overuse_update(self, d_arrival, ts_delta_ms, d_size, self->hypothesis);
        detect(self, ts_delta_ms, arrival);
    }
    int update = !self->has_last_update ||
                 (arrival - self->last_update_ms) > FEEDBACK_INTERVAL_MS ||
                 self->hypothesis == OVERUSING;
    if (update) {
        long long target;
        int has_rate = rate_rate(&self->rate, arrival, &rate);
        if (rate_control(self, self->hypothesis, has_rate, rate, arrival, &target)) {
            self->has_last_update = 1;
            self->last_update_ms = arrival;
            PyObject *ssrcs = PyDict_Keys(self->ssrcs);
            if (ssrcs == NULL) return NULL;
            return Py_BuildValue("(LN)", target, ssrcs);
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef Estimator_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Estimator_add, METH_FASTCALL,
     "add(arrival_time_ms, abs_send_time, payload_size, ssrc) -> (bitrate, ssrcs) or None"},
    {NULL}};

static PyTypeObject EstimatorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vteller.media._rtpfast.Estimator",
    .tp_basicsize = sizeof(Estimator),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "aiortc's RemoteBitrateEstimator in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)estimator_init,
    .tp_dealloc = (destructor)estimator_dealloc,
    .tp_methods = Estimator_methods,
};

/* ----------------------------------------------------------------- unprotect */

/* unprotect(function, srtp, datagram) -> the RTP packet, or None where libsrtp refuses
 * it (authentication, replay: aiortc drops those). `function`: srtp_unprotect's or
 * srtp_unprotect_rtcp's address (pylibsrtp's binding), `srtp`: the srtp_t's. */
static PyObject *unprotect(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "unprotect(function, srtp, datagram: bytes)");
        return NULL;
    }
    unsigned long long function = PyLong_AsUnsignedLongLong(args[0]);
    if (function == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    unsigned long long srtp = PyLong_AsUnsignedLongLong(args[1]);
    if (srtp == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    if (function == 0 || srtp == 0) {
        PyErr_SetString(PyExc_ValueError, "unprotect needs a function and a session");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[2]);
    if (size > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "datagram is too long");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(PyBytes_AS_STRING(args[2]), size);
    if (out == NULL) return NULL;
    int length = (int)size;
    int status = ((protect_fn)(uintptr_t)function)((void *)(uintptr_t)srtp,
                                                   PyBytes_AS_STRING(out), &length);
    if (status != 0) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    if (length != size && _PyBytes_Resize(&out, length) < 0) return NULL;
    return out;
}

/* --------------------------------------------------------------------- parse */

/* aiortc's HeaderExtensions fields, in the order HeaderExtensionsMap.get tries them */
static const char *EXTENSION_FIELDS[] = {"mid", "repaired_rtp_stream_id", "rtp_stream_id",
                                         "abs_send_time", "transmission_offset",
                                         "audio_level", "transport_sequence_number"};
#define N_FIELDS 7
static PyObject *field_names[N_FIELDS];
static PyObject *packet_names[10];
static const char *PACKET_FIELDS[] = {"version", "marker", "payload_type", "sequence_number",
                                      "timestamp", "ssrc", "csrc", "extensions", "payload",
                                      "padding_size"};

static PyObject *new_instance(PyObject *cls) {
    PyTypeObject *type = (PyTypeObject *)cls;
    PyObject *empty = PyTuple_New(0);
    if (empty == NULL) return NULL;
    PyObject *obj = type->tp_new(type, empty, NULL);
    Py_DECREF(empty);
    return obj;
}

/* The value of one extension element as HeaderExtensionsMap.get makes it; NULL with no
 * error set where aiortc's parse would not give a plain value (left to it). */
static PyObject *extension_value(int field, const uint8_t *v, int n) {
    switch (field) {
    case 0: /* mid: utf8 */
        return PyUnicode_DecodeUTF8((const char *)v, n, NULL);
    case 1:
    case 2: /* stream ids: ascii */
        return PyUnicode_DecodeASCII((const char *)v, n, NULL);
    case 3: /* abs-send-time: 24 bits */
        if (n != 3) return NULL;
        return PyLong_FromLong((long)v[0] << 16 | v[1] << 8 | v[2]);
    case 4: /* transmission offset: signed 24 bits */
        if (n != 3) return NULL;
        return PyLong_FromLong((long)(int32_t)((uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 |
                                               (uint32_t)v[2] << 8) >> 8);
    case 5: /* audio level: (voice, level) */
        if (n != 1) return NULL;
        return Py_BuildValue("(Ni)", PyBool_FromLong(v[0] & 0x80), v[0] & 0x7F);
    case 6: /* transport-wide sequence number */
        if (n != 2) return NULL;
        return PyLong_FromLong((long)v[0] << 8 | v[1]);
    }
    return NULL;
}

/* parse_rtp(data, ids, RtpPacket, HeaderExtensions) -> RtpPacket, or NotImplemented
 * for what it leaves to aiortc's RtpPacket.parse (anything invalid or unusual: aiortc
 * then raises what it raises). `ids`: the HeaderExtensionsMap's ids. */
static PyObject *parse_rtp(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyBytes_Check(args[0]) || !PyType_Check(args[2]) ||
        !PyType_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "parse_rtp(data: bytes, ids, RtpPacket, HeaderExtensions)");
        return NULL;
    }
    const uint8_t *d = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
    if (len < 12 || d[0] >> 6 != 2) Py_RETURN_NOTIMPLEMENTED;
    int cc = d[0] & 0x0F, padding_bit = d[0] >> 5 & 1, extension = d[0] >> 4 & 1;
    Py_ssize_t pos = 12 + 4 * cc;
    if (len < pos) Py_RETURN_NOTIMPLEMENTED;
    long ids[N_FIELDS];
    for (int f = 0; f < N_FIELDS; f++) {
        PyObject *id = PyObject_GetAttr(args[1], field_names[f]);
        if (id == NULL) return NULL;
        ids[f] = id == Py_None ? -1 : PyLong_AsLong(id);
        Py_DECREF(id);
        if (ids[f] == -1 && PyErr_Occurred()) return NULL;
    }
    PyObject *values[N_FIELDS] = {NULL};
    PyObject *result = NULL, *packet = NULL, *extensions = NULL, *csrc = NULL;
    if (extension) {
        if (len < pos + 4) goto python;
        unsigned profile = d[pos] << 8 | d[pos + 1];
        Py_ssize_t ext_len = (Py_ssize_t)(d[pos + 2] << 8 | d[pos + 3]) * 4;
        pos += 4;
        if (len < pos + ext_len) goto python;
        if (profile != 0xBEDE && ext_len) goto python; /* two-byte form: aiortc's */
        Py_ssize_t at = pos, end = pos + ext_len;
        while (at < end) {
            if (d[at] == 0) {
                at++;
                continue;
            }
            int x_id = d[at] >> 4, x_len = (d[at] & 0x0F) + 1;
            at++;
            if (end < at + x_len) goto python;
            for (int f = 0; f < N_FIELDS; f++) {
                if (x_id != ids[f]) continue;
                PyObject *value = extension_value(f, d + at, x_len);
                if (value == NULL) {
                    PyErr_Clear();
                    goto python;
                }
                Py_XSETREF(values[f], value);
                break;
            }
            at += x_len;
        }
        pos = end;
    }
    Py_ssize_t padding = 0;
    if (padding_bit) {
        padding = d[len - 1];
        if (!padding || padding > len - pos) goto python;
    }
    extensions = new_instance(args[3]);
    packet = new_instance(args[2]);
    csrc = PyList_New(cc);
    if (extensions == NULL || packet == NULL || csrc == NULL) goto done;
    for (int i = 0; i < cc; i++) {
        const uint8_t *c = d + 12 + 4 * i;
        PyObject *v = PyLong_FromUnsignedLong((unsigned long)c[0] << 24 | c[1] << 16 |
                                              c[2] << 8 | c[3]);
        if (v == NULL) goto done;
        PyList_SET_ITEM(csrc, i, v);
    }
    for (int f = 0; f < N_FIELDS; f++)
        if (PyObject_SetAttr(extensions, field_names[f], values[f] ? values[f] : Py_None) < 0)
            goto done;
    PyObject *fields[10] = {
        PyLong_FromLong(2), PyLong_FromLong(d[1] >> 7), PyLong_FromLong(d[1] & 0x7F),
        PyLong_FromLong(d[2] << 8 | d[3]),
        PyLong_FromUnsignedLong((unsigned long)d[4] << 24 | d[5] << 16 | d[6] << 8 | d[7]),
        PyLong_FromUnsignedLong((unsigned long)d[8] << 24 | d[9] << 16 | d[10] << 8 | d[11]),
        Py_NewRef(csrc), Py_NewRef(extensions),
        PyBytes_FromStringAndSize((const char *)d + pos, len - pos - padding),
        PyLong_FromSsize_t(padding)};
    int failed = 0;
    for (int i = 0; i < 10; i++) {
        if (fields[i] == NULL || PyObject_SetAttr(packet, packet_names[i], fields[i]) < 0)
            failed = 1;
        Py_XDECREF(fields[i]);
    }
    if (!failed) result = Py_NewRef(packet);
    goto done;
python:
    result = Py_NewRef(Py_NotImplemented);
done:
    for (int f = 0; f < N_FIELDS; f++) Py_XDECREF(values[f]);
    Py_XDECREF(packet);
    Py_XDECREF(extensions);
    Py_XDECREF(csrc);
    return result;
}

static PyMethodDef module_methods[] = {
    {"unprotect", (PyCFunction)(void (*)(void))unprotect, METH_FASTCALL,
     "unprotect(function, srtp, datagram) -> bytes or None"},
    {"parse_rtp", (PyCFunction)(void (*)(void))parse_rtp, METH_FASTCALL,
     "parse_rtp(data, ids, RtpPacket, HeaderExtensions) -> RtpPacket or NotImplemented"},
    {NULL}};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rtpfast", "Native per-packet forwarding work.", -1,
    module_methods};

PyMODINIT_FUNC PyInit__rtpfast(void) {
    if (PyType_Ready(&RewriterType) < 0 || PyType_Ready(&WriterType) < 0 ||
        PyType_Ready(&EstimatorType) < 0)
        return NULL;
    for (int f = 0; f < N_FIELDS; f++)
        if ((field_names[f] = PyUnicode_InternFromString(EXTENSION_FIELDS[f])) == NULL)
            return NULL;
    for (int i = 0; i < 10; i++)
        if ((packet_names[i] = PyUnicode_InternFromString(PACKET_FIELDS[i])) == NULL)
            return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Rewriter", (PyObject *)&RewriterType) < 0 ||
        PyModule_AddObjectRef(m, "Writer", (PyObject *)&WriterType) < 0 ||
        PyModule_AddObjectRef(m, "Estimator", (PyObject *)&EstimatorType) < 0 ||
        PyModule_AddIntConstant(m, "HISTORY", HISTORY) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
