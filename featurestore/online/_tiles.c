/* Tile values decoded and combined in one pass (tile_kernel.py is the Python side).
 *
 * A lookup of an aggregation view combines, for each entity, the tiles of its stored value
 * that fall in each window (tiles.py). Done with NumPy, each step is one call over the
 * records of every entity, and a lookup of 100 entities spends most of its time in the
 * calls' fixed costs (~2 us each, a few hundred of them); here each value is read where it
 * lies, once, and the results are built as the Python objects a lookup returns.
 *
 * The value layout is tile_codec.py's; every read is bounds-checked against the value's
 * length first (pass 1 checks each value's parts before pass 2 reads them): a value that
 * does not add up is reported corrupt, never read past its end. The arithmetic follows
 * tile_combine.py's reference step by step (the same operations in the same order), so the
 * two give the same bits; tests/online/test_tile_kernel.py compares them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { K_I32, K_I64, K_F32, K_F64, K_BOOL, K_TS, K_STR, K_BYTES };
enum {
    F_COUNT, F_SUM, F_MEAN, F_VARIANCE, F_STDDEV, F_MIN, F_MAX, F_FIRST, F_LAST, F_LAST_N,
    F_COUNT_DISTINCT, F_APPROX
};
enum { GOOD, OTHER, CORRUPT };

#define HEAD 28 /* the 24-byte header, then T (uint32) */

typedef struct {
    int kind;
    int per_tile;
    int nullable;
    Py_ssize_t value_at; /* offset of the item in the record, -1 if not in the record */
    Py_ssize_t valid_at; /* offset of the validity byte, -1 if none */
    int variable;        /* index among the variable-width states, -1 if in the record */
} State;

typedef struct {
    int function;
    int at; /* position of its first state */
    int64_t span;
    int64_t n; /* last_n's n or the sketch's k */
} Step;

typedef struct {
    const unsigned char *items; /* numbers: the items; binary: the item bytes */
    int64_t count;              /* items */
    int64_t *ends;              /* binary: end of item i in items (start: ends[i - 1] or 0) */
} Payload;

typedef struct {
    uint32_t layout;
    Py_ssize_t record;
    int format;
    int run_bits;
    int n_states; /* positions 1..n_states (0 is the tile number) */
    State *states;
    int n_variable;
    int *variable; /* position of each variable-width state */
    int n_steps;
    Step *steps;
} Spec;

typedef struct {
    const unsigned char *records;
    int64_t tiles;
    Payload *payloads; /* n_variable of them */
} Entity;

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the tile values are little-endian: this kernel reads them as the machine's own order"
#endif

/* Unaligned reads of the values' little-endian numbers (memcpy compiles to one load). */
#define READER(name, type)                            \
    static inline type name(const unsigned char *p) { \
        type v;                                       \
        memcpy(&v, p, sizeof v);                      \
        return v;                                     \
    }
READER(rd_u32, uint32_t)
READER(rd_i32, int32_t)
READER(rd_i64, int64_t)
READER(rd_f32, float)
READER(rd_f64, double)

static int item_size(int kind) {
    switch (kind) {
    case K_I32: case K_F32: return 4;
    case K_I64: case K_F64: case K_TS: return 8;
    case K_BOOL: return 1;
    default: return 0;
    }
}

/* -- the spec: built once per tile group by tile_kernel.py ------------------------------- */

static void free_spec(Spec *s) {
    free(s->states);
    free(s->variable);
    free(s->steps);
}

static int parse_spec(PyObject *o, Spec *s) {
    PyObject *states, *variable, *steps;
    unsigned long layout;
    memset(s, 0, sizeof *s);
    if (!PyArg_ParseTuple(o, "kniiO!O!O!", &layout, &s->record, &s->format, &s->run_bits,
                          &PyTuple_Type, &states, &PyTuple_Type, &variable, &PyTuple_Type, &steps))
        return -1;
    s->layout = (uint32_t)layout;
    s->n_states = (int)PyTuple_GET_SIZE(states);
    s->n_variable = (int)PyTuple_GET_SIZE(variable);
    s->n_steps = (int)PyTuple_GET_SIZE(steps);
    s->states = calloc(s->n_states + 1, sizeof(State));
    s->variable = calloc(s->n_variable + 1, sizeof(int));
    s->steps = calloc(s->n_steps + 1, sizeof(Step));
    if (!s->states || !s->variable || !s->steps) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < s->n_states; i++) {
        State *st = &s->states[i];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(states, i), "iiinni", &st->kind, &st->per_tile,
                              &st->nullable, &st->value_at, &st->valid_at, &st->variable))
            return -1;
    }
    for (int i = 0; i < s->n_variable; i++) {
        s->variable[i] = (int)PyLong_AsLong(PyTuple_GET_ITEM(variable, i));
        if (PyErr_Occurred()) return -1;
    }
    for (int i = 0; i < s->n_steps; i++) {
        Step *st = &s->steps[i];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(steps, i), "iiLL", &st->function, &st->at, &st->span, &st->n))
            return -1;
        if (st->at < 1 || st->at > s->n_states) {
            PyErr_SetString(PyExc_ValueError, "a step's state is out of range");
            return -1;
        }
    }
    return 0;
}

static inline const State *state_of(const Spec *s, int position) { return &s->states[position - 1]; }

static inline const unsigned char *rec(const Spec *s, const Entity *e, int64_t r) {
    return e->records + r * s->record;
}
static inline int64_t tile_of(const Spec *s, const Entity *e, int64_t r) { return rd_i64(rec(s, e, r)); }
static inline int valid(const Spec *s, const Entity *e, int64_t r, int position) {
    const State *st = state_of(s, position);
    return st->valid_at < 0 || rec(s, e, r)[st->valid_at] != 0;
}
static inline int64_t int_state(const Spec *s, const Entity *e, int64_t r, int position) {
    const State *st = state_of(s, position);
    const unsigned char *p = rec(s, e, r) + st->value_at;
    switch (st->kind) {
    case K_I32: return rd_i32(p);
    case K_BOOL: return p[0] != 0;
    default: return rd_i64(p);
    }
}
static inline double float_state(const Spec *s, const Entity *e, int64_t r, int position) {
    const State *st = state_of(s, position);
    const unsigned char *p = rec(s, e, r) + st->value_at;
    return st->kind == K_F32 ? (double)rd_f32(p) : rd_f64(p);
}
static inline int is_float(int kind) { return kind == K_F32 || kind == K_F64; }

/* -- pass 1: where each value's parts lie, or why it cannot be read ------------------------ */

/* The payload of variable-width state ``v`` of a value, its ``length`` bytes at ``at``;
 * 0, or -1 where the parts disagree (the value is corrupt). */
static int read_payload(const Spec *s, Entity *e, int v, const unsigned char *at, int64_t length) {
    int position = s->variable[v];
    const State *st = state_of(s, position);
    Payload *p = &e->payloads[v];
    int64_t want = 0;
    if (st->per_tile) {
        want = e->tiles;
    } else { /* as many items as the tiles' counts (the next state) say */
        for (int64_t r = 0; r < e->tiles; r++) {
            int64_t c = int_state(s, e, r, position + 1);
            if (c < 0 || c > length) return -1;
            want += c;
            if (want > length) return -1;
        }
    }
    p->count = want;
    int size = item_size(st->kind);
    if (size) {
        if (length != want * size) return -1;
        p->items = at;
        return 0;
    }
    /* k, k lengths, the bytes */
    if (length < 4 + 4 * want || (int64_t)rd_u32(at) != want) return -1;
    p->ends = malloc(sizeof(int64_t) * (size_t)(want + 1));
    if (!p->ends) return -2;
    int64_t end = 0;
    for (int64_t i = 0; i < want; i++) {
        end += rd_u32(at + 4 + 4 * i);
        p->ends[i] = end;
    }
    if (length != 4 + 4 * want + end) return -1;
    p->items = at + 4 + 4 * want;
    return 0;
}

/* 0: good; OTHER, CORRUPT; -2 out of memory */
static int read_value(const Spec *s, const unsigned char *v, Py_ssize_t length, Entity *e,
                      int64_t *event_ts, int64_t *run_id) {
    if (length < HEAD) { /* too short for a header and T */
        if (length >= 24 && v[19] == s->format && rd_u32(v + 20) != s->layout) return OTHER;
        return CORRUPT;
    }
    uint32_t word = rd_u32(v + 16);
    if ((int)(word >> s->run_bits) != s->format) return CORRUPT;
    if (rd_u32(v + 20) != s->layout) return OTHER;
    e->tiles = rd_u32(v + 24);
    e->records = v + HEAD;
    int64_t pos = HEAD + e->tiles * s->record;
    if (pos > length) return CORRUPT;
    for (int i = 0; i < s->n_variable; i++) {
        if (pos + 4 > length) return CORRUPT;
        int64_t size = rd_u32(v + pos);
        if (pos + 4 + size > length) return CORRUPT;
        int got = read_payload(s, e, i, v + pos + 4, size);
        if (got == -2) return -2;
        if (got < 0) return CORRUPT;
        pos += 4 + size;
    }
    if (pos != length) return CORRUPT;
    *event_ts = rd_i64(v);
    *run_id = word & ((1u << s->run_bits) - 1);
    return GOOD;
}

/* -- pass 2: the functions, one entity at a time ------------------------------------------- */

typedef struct {
    int lifetime;
    int64_t last; /* the tile that ends the windows */
    int damaged;  /* a String item of the entity used here does not decode */
} Ctx;

static inline int in_window(const Spec *s, const Ctx *c, const Entity *e, int64_t r, int64_t span) {
    if (c->lifetime) return 1;
    int64_t t = tile_of(s, e, r);
    return t <= c->last && t > c->last - span;
}

static PyObject *number(int kind, const unsigned char *p) {
    switch (kind) {
    case K_I32: return PyLong_FromLong(rd_i32(p));
    case K_I64: case K_TS: return PyLong_FromLongLong(rd_i64(p));
    case K_F32: return PyFloat_FromDouble((double)rd_f32(p));
    case K_F64: return PyFloat_FromDouble(rd_f64(p));
    case K_BOOL: return PyBool_FromLong(p[0] != 0);
    }
    Py_RETURN_NONE;
}

/* Item i of a binary payload as str (None, and the entity damaged, if it is not UTF-8) or bytes. */
static PyObject *binary_item(Ctx *c, int kind, const Payload *p, int64_t i) {
    int64_t start = i ? p->ends[i - 1] : 0;
    const char *at = (const char *)p->items + start;
    Py_ssize_t size = (Py_ssize_t)(p->ends[i] - start);
    if (kind == K_BYTES) return PyBytes_FromStringAndSize(at, size);
    PyObject *text = PyUnicode_DecodeUTF8(at, size, NULL);
    if (!text && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        c->damaged = 1;
        Py_RETURN_NONE;
    }
    return text;
}

static PyObject *item(Ctx *c, const Spec *s, const Entity *e, int position, int64_t i) {
    const State *st = state_of(s, position);
    const Payload *p = &e->payloads[st->variable];
    if (st->kind == K_STR || st->kind == K_BYTES) return binary_item(c, st->kind, p, i);
    return number(st->kind, p->items + i * item_size(st->kind));
}

/* A per-tile state's value in record r: in the record, or (String/Bytes) item r. */
static PyObject *tile_value(Ctx *c, const Spec *s, const Entity *e, int position, int64_t r) {
    const State *st = state_of(s, position);
    if (st->variable >= 0) return item(c, s, e, position, r);
    return number(st->kind, rec(s, e, r) + st->value_at);
}

static PyObject *f_count(const Spec *s, Ctx *c, const Entity *e, const Step *a) {
    uint64_t total = 0; /* wraps as int64 sums do */
    for (int64_t r = 0; r < e->tiles; r++)
        if (in_window(s, c, e, r, a->span)) total += (uint64_t)int_state(s, e, r, a->at);
    return PyLong_FromLongLong((int64_t)total);
}

static PyObject *f_sum(const Spec *s, Ctx *c, const Entity *e, const Step *a) {
    int present = 0;
    if (is_float(state_of(s, a->at)->kind)) {
        double total = 0.0;
        for (int64_t r = 0; r < e->tiles; r++)
            if (in_window(s, c, e, r, a->span) && valid(s, e, r, a->at)) {
                total += float_state(s, e, r, a->at);
                present = 1;
            }
        if (present) return PyFloat_FromDouble(total);
        Py_RETURN_NONE;
    }
    uint64_t total = 0;
    for (int64_t r = 0; r < e->tiles; r++)
        if (in_window(s, c, e, r, a->span) && valid(s, e, r, a->at)) {
            total += (uint64_t)int_state(s, e, r, a->at);
            present = 1;
        }
    if (present) return PyLong_FromLongLong((int64_t)total);
    Py_RETURN_NONE;
}

static PyObject *f_mean(const Spec *s, Ctx *c, const Entity *e, const Step *a) {
    uint64_t count = 0;
    double total = 0.0;
    for (int64_t r = 0; r < e->tiles; r++) {
        if (!in_window(s, c, e, r, a->span)) continue;
        count += (uint64_t)int_state(s, e, r, a->at + 1);
        if (valid(s, e, r, a->at)) total += float_state(s, e, r, a->at);
    }
    if ((int64_t)count > 0) return PyFloat_FromDouble(total / (double)(int64_t)count);
    Py_RETURN_NONE;
}

/* Chan et al.'s parallel form, as tile_combine._variance: the window's mean, then m2. */
static int variance(const Spec *s, Ctx *c, const Entity *e, const Step *a, double *out) {
    double n = 0.0, weighted = 0.0;
    int at = a->at;
    for (int64_t r = 0; r < e->tiles; r++) {
        if (!in_window(s, c, e, r, a->span) || int_state(s, e, r, at) <= 0) continue;
        if (!valid(s, e, r, at + 1) || !valid(s, e, r, at + 2)) continue;
        double count = (double)int_state(s, e, r, at);
        n += count;
        weighted += count * float_state(s, e, r, at + 1);
    }
    if (!(n >= 2)) return 0;
    double mean = n > 0 ? weighted / n : 0.0;
    double m2 = 0.0;
    for (int64_t r = 0; r < e->tiles; r++) {
        if (!in_window(s, c, e, r, a->span) || int_state(s, e, r, at) <= 0) continue;
        if (!valid(s, e, r, at + 1) || !valid(s, e, r, at + 2)) continue;
        double count = (double)int_state(s, e, r, at);
        double deviation = float_state(s, e, r, at + 1) - mean;
        m2 += float_state(s, e, r, at + 2) + count * deviation * deviation;
    }
    /* max(m2, 0) as np.maximum (NaN kept), over n - 1 */
    *out = (m2 > 0.0 || isnan(m2) ? m2 : 0.0) / (n - 1);
    return 1;
}

static PyObject *f_variance(const Spec *s, Ctx *c, const Entity *e, const Step *a) {
    double v;
    if (variance(s, c, e, a, &v)) return PyFloat_FromDouble(v);
    Py_RETURN_NONE;
}

static PyObject *f_stddev(const Spec *s, Ctx *c, const Entity *e, const Step *a) {
    double v;
    if (variance(s, c, e, a, &v)) return PyFloat_FromDouble(pow(v, 0.5)); /* Python's v ** 0.5 */
    Py_RETURN_NONE;
}

static int bytes_less(const Payload *p, int64_t i, int64_t j) {
    int64_t si = i ? p->ends[i - 1] : 0, sj = j ? p->ends[j - 1] : 0;
    int64_t li = p->ends[i] - si, lj = p->ends[j] - sj;
    int cmp = memcmp(p->items + si, p->items + sj, (size_t)(li < lj ? li : lj));
    return cmp < 0 || (cmp == 0 && li < lj);
}

static PyObject *f_extreme(const Spec *s, Ctx *c, const Entity *e, const Step *a, int smallest) {
    const State *st = state_of(s, a->at);
    int64_t best = -1;
    if (st->variable >= 0) { /* String/Bytes: on the bytes (UTF-8 orders as text does) */
        const Payload *p = &e->payloads[st->variable];
        for (int64_t r = 0; r < e->tiles; r++) {
            if (!in_window(s, c, e, r, a->span) || !valid(s, e, r, a->at)) continue;
            if (best < 0 || (smallest ? bytes_less(p, r, best) : bytes_less(p, best, r))) best = r;
        }
        if (best < 0) Py_RETURN_NONE;
        return binary_item(c, st->kind, p, best);
    }
    if (is_float(st->kind)) { /* a NaN wins, as in np.minimum; of equal values (-0.0, 0.0) the first */
        double acc = 0.0;
        for (int64_t r = 0; r < e->tiles; r++) {
            if (!in_window(s, c, e, r, a->span) || !valid(s, e, r, a->at)) continue;
            double x = float_state(s, e, r, a->at);
            if (best < 0 || (!isnan(acc) && (isnan(x) || (smallest ? x < acc : x > acc)))) acc = x;
            best = r;
        }
        if (best < 0) Py_RETURN_NONE;
        return PyFloat_FromDouble(acc);
    }
    int64_t acc = 0;
    for (int64_t r = 0; r < e->tiles; r++) {
        if (!in_window(s, c, e, r, a->span) || !valid(s, e, r, a->at)) continue;
        int64_t x = int_state(s, e, r, a->at);
        if (best < 0 || (smallest ? x < acc : x > acc)) acc = x;
        best = r;
    }
    if (best < 0) Py_RETURN_NONE;
    if (st->kind == K_BOOL) return PyBool_FromLong(acc != 0);
    return PyLong_FromLongLong(acc);
}

static PyObject *f_end(const Spec *s, Ctx *c, const Entity *e, const Step *a, int first) {
    int64_t chosen = -1;
    for (int64_t r = 0; r < e->tiles; r++) {
        if (!in_window(s, c, e, r, a->span) || !valid(s, e, r, a->at)) continue;
        chosen = r;
        if (first) break;
    }
    if (chosen < 0) Py_RETURN_NONE;
    return tile_value(c, s, e, a->at, chosen);
}

/* Where each record's items begin in a flattened state (its counts follow it). */
static int64_t *item_starts(const Spec *s, const Entity *e, int position) {
    int64_t *first = malloc(sizeof(int64_t) * (size_t)(e->tiles + 1));
    if (!first) return NULL;
    first[0] = 0;
    for (int64_t r = 0; r < e->tiles; r++) first[r + 1] = first[r] + int_state(s, e, r, position + 1);
    return first;
}

static PyObject *f_last_n(const Spec *s, Ctx *c, const Entity *e, const Step *a) {
    /* tiles newest first, each tile's values stored newest first */
    int64_t *first = item_starts(s, e, a->at);
    if (!first) return PyErr_NoMemory();
    PyObject *out = PyList_New(0);
    for (int64_t r = e->tiles - 1; out && r >= 0 && PyList_GET_SIZE(out) < a->n; r--) {
        if (!in_window(s, c, e, r, a->span)) continue;
        for (int64_t i = first[r]; i < first[r + 1] && PyList_GET_SIZE(out) < a->n; i++) {
            PyObject *v = item(c, s, e, a->at, i);
            if (!v || PyList_Append(out, v) < 0) {
                Py_XDECREF(v);
                Py_CLEAR(out);
                break;
            }
            Py_DECREF(v);
        }
    }
    free(first);
    if (out && PyList_GET_SIZE(out) == 0) {
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return out;
}

static int cmp_i64(const void *x, const void *y) {
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}
static int cmp_f64(const void *x, const void *y) { /* NaN last, as NumPy sorts */
    double a = *(const double *)x, b = *(const double *)y;
    if (isnan(a) || isnan(b)) return isnan(a) - isnan(b);
    return (a > b) - (a < b);
}
static const Payload *sort_payload; /* for cmp_item: qsort takes no context (under the GIL) */
static int cmp_item(const void *x, const void *y) {
    int64_t i = *(const int64_t *)x, j = *(const int64_t *)y;
    if (bytes_less(sort_payload, i, j)) return -1;
    return bytes_less(sort_payload, j, i);
}

/* The items of a flattened state in the window's records: their indices, how many. */
static int64_t *window_items(const Spec *s, Ctx *c, const Entity *e, const Step *a, int64_t *count) {
    int64_t *first = item_starts(s, e, a->at);
    if (!first) return NULL;
    int64_t *picked = malloc(sizeof(int64_t) * (size_t)(first[e->tiles] + 1));
    int64_t k = 0;
    if (picked)
        for (int64_t r = 0; r < e->tiles; r++)
            if (in_window(s, c, e, r, a->span))
                for (int64_t i = first[r]; i < first[r + 1]; i++) picked[k++] = i;
    free(first);
    *count = k;
    return picked;
}

/* Distinct values among the items: -0.0 and 0.0 are one value, as are all NaNs. */
static PyObject *f_count_distinct(const Spec *s, Ctx *c, const Entity *e, const Step *a) {
    const State *st = state_of(s, a->at);
    const Payload *p = &e->payloads[st->variable];
    int64_t k;
    int64_t *picked = window_items(s, c, e, a, &k);
    if (!picked) return PyErr_NoMemory();
    int64_t distinct = 0;
    if (st->kind == K_STR || st->kind == K_BYTES) {
        sort_payload = p;
        qsort(picked, (size_t)k, sizeof(int64_t), cmp_item);
        for (int64_t i = 0; i < k; i++)
            distinct += i == 0 || bytes_less(p, picked[i - 1], picked[i]);
    } else if (is_float(st->kind)) {
        double *v = malloc(sizeof(double) * (size_t)(k + 1));
        if (!v) {
            free(picked);
            return PyErr_NoMemory();
        }
        for (int64_t i = 0; i < k; i++)
            v[i] = st->kind == K_F32 ? (double)rd_f32(p->items + 4 * picked[i]) : rd_f64(p->items + 8 * picked[i]);
        qsort(v, (size_t)k, sizeof(double), cmp_f64);
        for (int64_t i = 0; i < k; i++)
            distinct += i == 0 || (v[i] != v[i - 1] && !(isnan(v[i]) && isnan(v[i - 1])));
        free(v);
    } else {
        int size = item_size(st->kind);
        for (int64_t i = 0; i < k; i++) { /* in place: an index becomes its value */
            const unsigned char *q = p->items + size * picked[i];
            picked[i] = size == 4 ? rd_i32(q) : size == 1 ? q[0] != 0 : rd_i64(q);
        }
        qsort(picked, (size_t)k, sizeof(int64_t), cmp_i64);
        for (int64_t i = 0; i < k; i++) distinct += i == 0 || picked[i] != picked[i - 1];
    }
    free(picked);
    return PyLong_FromLongLong(distinct);
}

/* The window's distinct hashes and its kth smallest (0 below k): tile_kernel.py estimates. */
static PyObject *f_approx(const Spec *s, Ctx *c, const Entity *e, const Step *a) {
    const Payload *p = &e->payloads[state_of(s, a->at)->variable];
    int64_t k;
    int64_t *picked = window_items(s, c, e, a, &k);
    if (!picked) return PyErr_NoMemory();
    for (int64_t i = 0; i < k; i++) picked[i] = rd_i64(p->items + 8 * picked[i]);
    qsort(picked, (size_t)k, sizeof(int64_t), cmp_i64);
    int64_t distinct = 0, kth = 0;
    for (int64_t i = 0; i < k; i++)
        if (i == 0 || picked[i] != picked[i - 1])
            if (++distinct == a->n) kth = picked[i];
    free(picked);
    return Py_BuildValue("LL", distinct, kth);
}

static PyObject *apply(const Spec *s, Ctx *c, const Entity *e, const Step *a) {
    switch (a->function) {
    case F_COUNT: return f_count(s, c, e, a);
    case F_SUM: return f_sum(s, c, e, a);
    case F_MEAN: return f_mean(s, c, e, a);
    case F_VARIANCE: return f_variance(s, c, e, a);
    case F_STDDEV: return f_stddev(s, c, e, a);
    case F_MIN: return f_extreme(s, c, e, a, 1);
    case F_MAX: return f_extreme(s, c, e, a, 0);
    case F_FIRST: return f_end(s, c, e, a, 1);
    case F_LAST: return f_end(s, c, e, a, 0);
    case F_LAST_N: return f_last_n(s, c, e, a);
    case F_COUNT_DISTINCT: return f_count_distinct(s, c, e, a);
    case F_APPROX: return f_approx(s, c, e, a);
    }
    PyErr_SetString(PyExc_ValueError, "unknown aggregation function");
    return NULL;
}

/* -- the entry point ------------------------------------------------------------------------ */

static PyObject *list_of(const int64_t *xs, Py_ssize_t n) {
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        PyObject *x = PyLong_FromLongLong(xs[i]);
        if (!x) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, x);
    }
    return out;
}

PyDoc_STRVAR(combine_doc,
"combine(spec, values, last) -> (good, other, corrupt, event_ts_us, run_ids, results, damaged)\n\n"
"Decode a tile group's values (a sequence of bytes) and combine each aggregation's tiles in\n"
"the windows ending at tile ``last`` (None: the lifetime group). ``results`` holds one list\n"
"per aggregation with one item per good value; ``damaged``, indices into ``good``.");

static PyObject *combine(PyObject *self, PyObject *args) {
    PyObject *spec_obj, *values, *last_obj;
    if (!PyArg_ParseTuple(args, "OOO", &spec_obj, &values, &last_obj)) return NULL;
    Spec s;
    Ctx c = {last_obj == Py_None, 0, 0};
    if (!c.lifetime) {
        c.last = PyLong_AsLongLong(last_obj);
        if (PyErr_Occurred()) return NULL;
    }
    PyObject *seq = PySequence_Fast(values, "values must be a sequence of bytes");
    if (!seq) return NULL;
    if (parse_spec(spec_obj, &s) < 0) {
        free_spec(&s);
        Py_DECREF(seq);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *result = NULL, *good = NULL, *other = NULL, *corrupt = NULL, *results = NULL, *damaged = NULL;
    PyObject *stamps = NULL, *runs = NULL;
    Entity *entities = calloc((size_t)n + 1, sizeof(Entity));
    Payload *payloads = calloc((size_t)n * (size_t)s.n_variable + 1, sizeof(Payload));
    int64_t *event_ts = calloc((size_t)n + 1, sizeof(int64_t));
    int64_t *run_ids = calloc((size_t)n + 1, sizeof(int64_t));
    Py_ssize_t *good_at = calloc((size_t)n + 1, sizeof(Py_ssize_t));
    Py_ssize_t n_good = 0;
    good = PyList_New(0);
    other = PyList_New(0);
    corrupt = PyList_New(0);
    damaged = PyList_New(0);
    if (!entities || !payloads || !event_ts || !run_ids || !good_at) {
        PyErr_NoMemory();
        goto done;
    }
    if (!good || !other || !corrupt || !damaged) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyBytes_Check(v)) {
            PyErr_SetString(PyExc_TypeError, "values must be bytes");
            goto done;
        }
        Entity *e = &entities[n_good];
        e->payloads = payloads + (size_t)i * (size_t)s.n_variable;
        int got = read_value(&s, (const unsigned char *)PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v), e,
                             &event_ts[n_good], &run_ids[n_good]);
        if (got == -2) {
            PyErr_NoMemory();
            goto done;
        }
        PyObject *index = PyLong_FromSsize_t(i);
        if (!index) goto done;
        int appended = PyList_Append(got == GOOD ? good : got == OTHER ? other : corrupt, index);
        Py_DECREF(index);
        if (appended < 0) goto done;
        if (got == GOOD) {
            good_at[n_good++] = i;
        } else { /* the entity slot is reused: free what its partial read kept */
            for (int k = 0; k < s.n_variable; k++) {
                free(e->payloads[k].ends);
                e->payloads[k].ends = NULL;
            }
        }
    }
    results = PyList_New(s.n_steps);
    if (!results) goto done;
    for (int a = 0; a < s.n_steps; a++) {
        PyObject *column = PyList_New(n_good);
        if (!column) goto done;
        PyList_SET_ITEM(results, a, column);
    }
    for (Py_ssize_t g = 0; g < n_good; g++) {
        c.damaged = 0;
        for (int a = 0; a < s.n_steps; a++) {
            PyObject *x = apply(&s, &c, &entities[g], &s.steps[a]);
            if (!x) goto done;
            PyList_SET_ITEM(PyList_GET_ITEM(results, a), g, x);
        }
        if (c.damaged) {
            PyObject *index = PyLong_FromSsize_t(g);
            if (!index || PyList_Append(damaged, index) < 0) {
                Py_XDECREF(index);
                goto done;
            }
            Py_DECREF(index);
        }
    }
    stamps = list_of(event_ts, n_good);
    runs = list_of(run_ids, n_good);
    if (stamps && runs)
        result = PyTuple_Pack(7, good, other, corrupt, stamps, runs, results, damaged);
done:
    if (payloads)
        for (size_t k = 0; k < (size_t)n * (size_t)s.n_variable; k++) free(payloads[k].ends);
    free(entities);
    free(payloads);
    free(event_ts);
    free(run_ids);
    free(good_at);
    Py_XDECREF(good);
    Py_XDECREF(other);
    Py_XDECREF(corrupt);
    Py_XDECREF(results);
    Py_XDECREF(damaged);
    Py_XDECREF(stamps);
    Py_XDECREF(runs);
    free_spec(&s);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"combine", combine, METH_VARARGS, combine_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_tiles",
    .m_doc = "Tile values decoded and combined (see tile_kernel.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__tiles(void) { return PyModule_Create(&module); }
