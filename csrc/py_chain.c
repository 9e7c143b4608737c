/* CPython glue: the immutable Chain type (tiny_backprop._C.Chain).
 * A Chain is parsed and validated once, here, and only here: plan_chain, simulate and
 * min_budget (py_planner.c) take a Chain or build one from the same fields with
 * tb_py_chain_from_fields.
 *
 * Safety: every input sequence is first copied into a tuple we own (PySequence_Tuple),
 * and every element is converted from that copy. An element's __index__/__float__ may
 * run arbitrary code (mutating, clearing or freeing the caller's list); it cannot touch
 * our copy, and the copy keeps the element alive while it is converted. */
#include "py_common.h"

#include <math.h>
#include <string.h>

#include "planner.h"

/* Tuple copy of a sequence argument, or NULL with TypeError naming the field. */
static PyObject *copy_sequence(PyObject *obj, const char *name, const char *what)
{
    if (!PySequence_Check(obj) || PyUnicode_Check(obj) || PyBytes_Check(obj) ||
        PyByteArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of %s, not %.100s", name, what,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return PySequence_Tuple(obj);
}

/* A cost: an int, a float or anything with __float__ / __index__ (not a bool), finite
 * and >= 0. 0, or -1 with an exception naming field[i]. */
static int convert_cost(PyObject *item, const char *name, Py_ssize_t i, double *out)
{
    PyNumberMethods *nb = Py_TYPE(item)->tp_as_number;
    if (PyBool_Check(item) ||
        !(PyFloat_Check(item) || PyLong_Check(item) ||
          (nb != NULL && (nb->nb_float != NULL || nb->nb_index != NULL)))) {
        PyErr_Format(PyExc_TypeError, "%s[%zd] must be a number >= 0, not %.100s", name, i,
                     Py_TYPE(item)->tp_name);
        return -1;
    }
    double v = PyFloat_AsDouble(item); /* may run __float__ */
    if (v == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        v = HUGE_VAL;
    }
    if (!isfinite(v) || v < 0) {
        PyErr_Format(PyExc_ValueError, "%s[%zd] must be a finite number >= 0, got %R", name,
                     i, item);
        return -1;
    }
    *out = v;
    return 0;
}

/* A size in bytes: an int (or __index__), not a bool, in [0, TB_MAX_BYTES]. */
static int convert_size(PyObject *item, const char *name, Py_ssize_t i, Py_ssize_t k,
                        int64_t *out)
{
    char where[32] = "";
    if (k >= 0)
        (void)snprintf(where, sizeof(where), "[%zd]", k);
    if (PyBool_Check(item) || !PyIndex_Check(item)) {
        PyErr_Format(PyExc_TypeError, "%s[%zd]%s must be an int >= 0 (bytes), not %.100s",
                     name, i, where, Py_TYPE(item)->tp_name);
        return -1;
    }
    PyObject *index = PyNumber_Index(item); /* may run __index__ */
    if (index == NULL)
        return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow < 0 || (overflow == 0 && v < 0)) {
        PyErr_Format(PyExc_ValueError, "%s[%zd]%s must be an int >= 0 (bytes), got %R", name,
                     i, where, item);
        return -1;
    }
    if (overflow > 0 || v > TB_MAX_BYTES) {
        PyErr_Format(PyExc_ValueError, "%s[%zd]%s must be at most 2**52 bytes, got %R", name,
                     i, where, item);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

int tb_py_parse_flag(PyObject *obj, const char *name, int *out)
{
    if (obj == Py_None) {
        *out = 0;
        return 0;
    }
    if (!PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a bool, not %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    *out = obj == Py_True;
    return 0;
}

static void chain_free_arrays(tb_chain_object *self)
{
    PyMem_Free(self->f);
    PyMem_Free(self->b);
    PyMem_Free(self->x);
    PyMem_Free(self->g);
    PyMem_Free(self->mk);
    PyMem_Free(self->live);
    PyMem_Free(self->opt_first);
    PyMem_Free(self->opt_bytes);
    PyMem_Free(self->opt_save);
    PyMem_Free(self->opt_overlap);
    PyMem_Free(self->w);
    PyMem_Free(self->cut);
    self->w = NULL;
    self->cut = NULL;
    self->f = self->b = NULL;
    self->x = self->g = self->live = NULL;
    self->mk = NULL;
    self->opt_first = NULL;
    self->opt_bytes = NULL;
    self->opt_save = NULL;
    self->opt_overlap = NULL;
    self->n_opt = 0;
}

/* One per-stage field: tuple copy, length check, conversion into a PyMem array of n
 * entries (kind 'c' cost, 's' size, 'b' bool flag). NULL + exception on error. */
static void *parse_field(PyObject *obj, const char *name, Py_ssize_t *n_io, char kind)
{
    Py_ssize_t n = *n_io;
    const char *what = kind == 'c' ? "numbers" : kind == 's' ? "ints (bytes)" : "bools";
    PyObject *t = copy_sequence(obj, name, what);
    if (t == NULL)
        return NULL;
    void *out = NULL;
    Py_ssize_t len = PyTuple_GET_SIZE(t);
    if (n < 0) /* forward_cost: sets the number of stages */
        n = len;
    if (len != n) {
        PyErr_Format(PyExc_ValueError, "%s has %zd entries, expected %zd (one per stage)", name,
                     len, n);
        goto error;
    }
    if (n == 0) {
        PyErr_Format(PyExc_ValueError, "%s: the chain is empty (need at least one stage)",
                     name);
        goto error;
    }
    if (n > TB_MAX_STAGES) {
        PyErr_Format(PyExc_ValueError, "%s: at most %d stages (TB_MAX_STAGES), got %zd", name,
                     TB_MAX_STAGES, n);
        goto error;
    }
    size_t elem = kind == 'c' ? sizeof(double) : kind == 's' ? sizeof(int64_t) : 1;
    out = PyMem_Malloc((size_t)n * elem);
    if (out == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(t, i); /* borrowed from our own tuple */
        if (kind == 'c') {
            if (convert_cost(item, name, i, (double *)out + i) < 0)
                goto error;
        } else if (kind == 's') {
            if (convert_size(item, name, i, -1, (int64_t *)out + i) < 0)
                goto error;
        } else {
            if (!PyBool_Check(item)) {
                PyErr_Format(PyExc_TypeError, "%s[%zd] must be a bool, not %.100s", name, i,
                             Py_TYPE(item)->tp_name);
                goto error;
            }
            ((uint8_t *)out)[i] = item == Py_True;
        }
    }
    Py_DECREF(t);
    *n_io = n;
    return out;
error:
    PyMem_Free(out);
    Py_DECREF(t);
    return NULL;
}

/* live_intervals: a sequence of (producer, last_user, bytes) int tuples,
 * 0 <= producer < last_user < n. PyMem array of 3 * *count (NULL + exception). */
static int64_t *parse_live(PyObject *obj, Py_ssize_t n, size_t *count)
{
    const char *name = "live_intervals";
    PyObject *t = copy_sequence(obj, name, "(producer, last_user, bytes) tuples");
    if (t == NULL)
        return NULL;
    Py_ssize_t m = PyTuple_GET_SIZE(t);
    int64_t *out = NULL;
    if ((size_t)m > TB_MAX_LIVE) {
        PyErr_Format(PyExc_ValueError, "%s: at most %d intervals (TB_MAX_LIVE), got %zd", name,
                     TB_MAX_LIVE, m);
        goto error;
    }
    out = PyMem_Malloc((size_t)(m ? 3 * m : 1) * sizeof(int64_t));
    if (out == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        PyObject *item = PyTuple_GET_ITEM(t, i); /* borrowed from our tuple; tuples are
                                                    immutable, so its items stay too */
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_Format(PyExc_TypeError,
                         "%s[%zd] must be a (producer, last_user, bytes) tuple, not %.100s",
                         name, i, Py_TYPE(item)->tp_name);
            goto error;
        }
        for (Py_ssize_t k = 0; k < 3; k++)
            if (convert_size(PyTuple_GET_ITEM(item, k), name, i, k, &out[3 * i + k]) < 0)
                goto error;
        if (out[3 * i] >= out[3 * i + 1] || out[3 * i + 1] >= (int64_t)n) {
            PyErr_Format(PyExc_ValueError,
                         "%s[%zd]: need 0 <= producer < last_user < %zd (stages), got %R",
                         name, i, n, item);
            goto error;
        }
    }
    *count = (size_t)m;
    Py_DECREF(t);
    return out;
error:
    PyMem_Free(out);
    Py_DECREF(t);
    return NULL;
}

/* options: a sequence of (stage, bytes, save) tuples, 0 <= stage < n, bytes an int in
 * [0, 2**52], 0 <= save <= forward_cost[stage]. Grouped by stage (stable: a stage's
 * options are numbered in the order given) into self's CSR arrays. 0 or -1. */
static int parse_options(tb_chain_object *self, PyObject *obj)
{
    const char *name = "options";
    PyObject *t = copy_sequence(obj, name, "(stage, bytes, save[, overlap]) tuples");
    if (t == NULL)
        return -1;
    Py_ssize_t m = PyTuple_GET_SIZE(t);
    size_t n = self->n;
    int64_t *stage = NULL;
    if ((size_t)m > TB_MAX_OPTIONS) {
        PyErr_Format(PyExc_ValueError, "%s: at most %d options (TB_MAX_OPTIONS), got %zd",
                     name, TB_MAX_OPTIONS, m);
        goto error;
    }
    if (m == 0) {
        Py_DECREF(t);
        return 0;
    }
    stage = PyMem_Malloc((size_t)m * sizeof(int64_t));
    self->opt_first = PyMem_Calloc(n + 1, sizeof(int32_t));
    self->opt_bytes = PyMem_Malloc((size_t)m * sizeof(int64_t));
    self->opt_save = PyMem_Malloc((size_t)m * sizeof(double));
    self->opt_overlap = PyMem_Malloc((size_t)m * sizeof(int64_t));
    int64_t *by = PyMem_Malloc((size_t)m * sizeof(int64_t));
    int64_t *ov = PyMem_Malloc((size_t)m * sizeof(int64_t));
    double *sv = PyMem_Malloc((size_t)m * sizeof(double));
    if (stage == NULL || self->opt_first == NULL || self->opt_bytes == NULL ||
        self->opt_save == NULL || self->opt_overlap == NULL || by == NULL || ov == NULL ||
        sv == NULL) {
        PyMem_Free(by);
        PyMem_Free(ov);
        PyMem_Free(sv);
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        PyObject *item = PyTuple_GET_ITEM(t, i); /* borrowed from our tuple */
        Py_ssize_t k = PyTuple_Check(item) ? PyTuple_GET_SIZE(item) : 0;
        if (k != 3 && k != 4) {
            PyErr_Format(PyExc_TypeError,
                         "%s[%zd] must be a (stage, bytes, save) or (stage, bytes, save, "
                         "overlap) tuple, not %.100s", name, i, Py_TYPE(item)->tp_name);
            goto error_local;
        }
        ov[i] = 0;
        if (convert_size(PyTuple_GET_ITEM(item, 0), name, i, 0, &stage[i]) < 0 ||
            convert_size(PyTuple_GET_ITEM(item, 1), name, i, 1, &by[i]) < 0 ||
            convert_cost(PyTuple_GET_ITEM(item, 2), name, i, &sv[i]) < 0 ||
            (k == 4 && convert_size(PyTuple_GET_ITEM(item, 3), name, i, 3, &ov[i]) < 0))
            goto error_local;
        if (ov[i] > by[i]) {
            PyErr_Format(PyExc_ValueError,
                         "%s[%zd]: overlap must be <= bytes (it is the part of the kept "
                         "bytes that the stage's saved bytes include), got %R", name, i, item);
            goto error_local;
        }
        if (stage[i] >= (int64_t)n) {
            PyErr_Format(PyExc_ValueError, "%s[%zd]: stage must be < %zu (stages), got %R",
                         name, i, n, item);
            goto error_local;
        }
        if (sv[i] > self->f[stage[i]]) {
            PyErr_Format(PyExc_ValueError,
                         "%s[%zd]: save must be <= forward_cost[stage] (a recomputation "
                         "cannot save more than it costs), got %R",
                         name, i, item);
            goto error_local;
        }
    }
    for (Py_ssize_t i = 0; i < m; i++)
        self->opt_first[stage[i] + 1]++;
    for (size_t s = 0; s < n; s++)
        self->opt_first[s + 1] += self->opt_first[s];
    for (Py_ssize_t i = 0; i < m; i++) { /* stable counting sort: opt_first[s] is a cursor */
        int32_t pos = self->opt_first[stage[i]]++;
        self->opt_bytes[pos] = by[i];
        self->opt_save[pos] = sv[i];
        self->opt_overlap[pos] = ov[i];
    }
    for (size_t s = n; s-- > 0;) /* the cursors ran to the next stage's start */
        self->opt_first[s + 1] = self->opt_first[s];
    self->opt_first[0] = 0;
    self->n_opt = (size_t)m;
    PyMem_Free(by);
    PyMem_Free(ov);
    PyMem_Free(sv);
    PyMem_Free(stage);
    Py_DECREF(t);
    return 0;
error_local:
    PyMem_Free(by);
    PyMem_Free(ov);
    PyMem_Free(sv);
error:
    PyMem_Free(stage);
    Py_DECREF(t);
    return -1; /* the caller frees self's arrays */
}

tb_chain tb_py_chain_view(const tb_chain_object *self, int transient)
{
    tb_chain c = {self->n,      self->f,    self->b,   self->x,
                  self->g,      self->mk,   self->n_live, self->live,
                  transient != 0, self->n_opt, self->opt_first, self->opt_bytes,
                  self->opt_save, self->opt_overlap, self->w, self->cut};
    return c;
}

/* Fills self from the fields. 0, or -1 with an exception (self's arrays then freed). */
static int chain_fill(tb_chain_object *self, PyObject *f, PyObject *b, PyObject *x, PyObject *g,
                      PyObject *mk, PyObject *live, PyObject *options, PyObject *working,
                      PyObject *cut)
{
    Py_ssize_t n = -1;
    if ((self->f = parse_field(f, "forward_cost", &n, 'c')) == NULL ||
        (self->b = parse_field(b, "backward_cost", &n, 'c')) == NULL ||
        (self->x = parse_field(x, "input_bytes", &n, 's')) == NULL ||
        (self->g = parse_field(g, "saved_bytes", &n, 's')) == NULL)
        goto error;
    if (mk != NULL && mk != Py_None && (self->mk = parse_field(mk, "must_keep", &n, 'b')) == NULL)
        goto error;
    if (working != NULL && working != Py_None &&
        (self->w = parse_field(working, "working_bytes", &n, 's')) == NULL)
        goto error;
    if (cut != NULL && cut != Py_None &&
        (self->cut = parse_field(cut, "cut_before", &n, 'b')) == NULL)
        goto error;
    self->n = (size_t)n;
    self->n_live = 0;
    if (live != NULL && live != Py_None &&
        (self->live = parse_live(live, n, &self->n_live)) == NULL)
        goto error;
    if (self->n_live == 0) { /* an empty interval list = a plain chain */
        PyMem_Free(self->live);
        self->live = NULL;
    }
    if (options != NULL && options != Py_None && parse_options(self, options) < 0)
        goto error;
    /* Sums: every schedule's cost must stay finite, every byte count exact. */
    double cost_sum = 0.0;
    for (size_t i = 0; i < self->n; i++)
        cost_sum += self->f[i] + self->b[i];
    if (!(cost_sum <= tb_max_cost_sum(self->n))) {
        PyObject *sum = PyFloat_FromDouble(cost_sum);
        PyObject *lim = PyFloat_FromDouble(tb_max_cost_sum(self->n));
        if (sum != NULL && lim != NULL)
            PyErr_Format(PyExc_ValueError,
                         "forward_cost, backward_cost: the costs sum to %R, over the limit of "
                         "%R for %zd stages (DBL_MAX / 4 / (stages + 1), so that no "
                         "schedule's total overflows); scale the costs down",
                         sum, lim, n);
        Py_XDECREF(sum);
        Py_XDECREF(lim);
        goto error;
    }
    tb_chain view = tb_py_chain_view(self, 0);
    tb_status st = tb_chain_check(&view);
    if (st == TB_ERR_OVERFLOW) {
        PyErr_SetString(PyExc_ValueError,
                        "input_bytes, saved_bytes, live_intervals, options, working_bytes: "
                        "the sum of all byte counts must stay <= 2**52");
        goto error;
    }
    if (st != TB_OK) {
        tb_raise_status(st, "Chain");
        goto error;
    }
    return 0;
error:
    chain_free_arrays(self);
    return -1;
}

/* ---------------------------------------------------------------- the type */

static PyObject *chain_alloc(PyTypeObject *type)
{
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    tb_chain_object *self = (tb_chain_object *)alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->n = 0;
    self->f = self->b = NULL;
    self->x = self->g = self->live = NULL;
    self->mk = NULL;
    self->n_live = 0;
    self->n_opt = 0;
    self->opt_first = NULL;
    self->opt_bytes = NULL;
    self->opt_save = NULL;
    self->opt_overlap = NULL;
    self->w = NULL;
    self->cut = NULL;
    return (PyObject *)self;
}

PyObject *tb_py_chain_from_fields(PyTypeObject *type, PyObject *f, PyObject *b, PyObject *x,
                                  PyObject *g, PyObject *mk, PyObject *live, PyObject *options,
                                  PyObject *working, PyObject *cut)
{
    PyObject *self = chain_alloc(type);
    if (self == NULL)
        return NULL;
    if (chain_fill((tb_chain_object *)self, f, b, x, g, mk, live, options, working, cut) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return self;
}

static PyObject *chain_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"forward_cost", "backward_cost", "input_bytes", "saved_bytes",
                             "must_keep", "live_intervals", "options", "working_bytes",
                             "cut_before", NULL};
    PyObject *f, *b, *x, *g, *mk = Py_None, *live = Py_None, *options = Py_None;
    PyObject *working = Py_None, *cut = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|$OOOOO:Chain", kwlist, &f, &b, &x, &g,
                                     &mk, &live, &options, &working, &cut))
        return NULL;
    return tb_py_chain_from_fields(type, f, b, x, g, mk, live, options, working, cut);
}

static void chain_dealloc(PyObject *op)
{
    tb_chain_object *self = (tb_chain_object *)op;
    PyTypeObject *tp = Py_TYPE(op);
    chain_free_arrays(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(op);
    Py_DECREF(tp);
}

static Py_ssize_t chain_len(PyObject *op)
{
    return (Py_ssize_t)((tb_chain_object *)op)->n;
}

static PyObject *chain_repr(PyObject *op)
{
    tb_chain_object *self = (tb_chain_object *)op;
    return PyUnicode_FromFormat("<tiny_backprop._C.Chain: %zu stages, %zu live intervals%s>",
                                self->n, self->n_live, self->mk ? ", must_keep" : "");
}

static PyObject *costs_tuple(const double *v, size_t n)
{
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    if (t == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *o = PyFloat_FromDouble(v[i]);
        if (o == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, o);
    }
    return t;
}

static PyObject *sizes_tuple(const int64_t *v, size_t n)
{
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    if (t == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *o = PyLong_FromLongLong((long long)v[i]);
        if (o == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, o);
    }
    return t;
}

static PyObject *get_forward_cost(PyObject *op, void *Py_UNUSED(closure))
{
    return costs_tuple(((tb_chain_object *)op)->f, ((tb_chain_object *)op)->n);
}

static PyObject *get_backward_cost(PyObject *op, void *Py_UNUSED(closure))
{
    return costs_tuple(((tb_chain_object *)op)->b, ((tb_chain_object *)op)->n);
}

static PyObject *get_input_bytes(PyObject *op, void *Py_UNUSED(closure))
{
    return sizes_tuple(((tb_chain_object *)op)->x, ((tb_chain_object *)op)->n);
}

static PyObject *get_saved_bytes(PyObject *op, void *Py_UNUSED(closure))
{
    return sizes_tuple(((tb_chain_object *)op)->g, ((tb_chain_object *)op)->n);
}

static PyObject *get_working_bytes(PyObject *op, void *Py_UNUSED(closure))
{
    tb_chain_object *self = (tb_chain_object *)op;
    if (self->w == NULL)
        Py_RETURN_NONE;
    return sizes_tuple(self->w, self->n);
}

static PyObject *flags_tuple(const uint8_t *v, size_t n)
{
    if (v == NULL)
        Py_RETURN_NONE;
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    if (t == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, PyBool_FromLong(v[i]));
    return t;
}

static PyObject *get_must_keep(PyObject *op, void *Py_UNUSED(closure))
{
    return flags_tuple(((tb_chain_object *)op)->mk, ((tb_chain_object *)op)->n);
}

static PyObject *get_cut_before(PyObject *op, void *Py_UNUSED(closure))
{
    return flags_tuple(((tb_chain_object *)op)->cut, ((tb_chain_object *)op)->n);
}

static PyObject *get_live_intervals(PyObject *op, void *Py_UNUSED(closure))
{
    tb_chain_object *self = (tb_chain_object *)op;
    if (self->n_live == 0)
        Py_RETURN_NONE;
    PyObject *t = PyTuple_New((Py_ssize_t)self->n_live);
    if (t == NULL)
        return NULL;
    for (size_t i = 0; i < self->n_live; i++) {
        PyObject *item = sizes_tuple(self->live + 3 * i, 3);
        if (item == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, item);
    }
    return t;
}

static PyObject *get_options(PyObject *op, void *Py_UNUSED(closure))
{
    tb_chain_object *self = (tb_chain_object *)op;
    if (self->n_opt == 0)
        Py_RETURN_NONE;
    PyObject *t = PyTuple_New((Py_ssize_t)self->n_opt);
    if (t == NULL)
        return NULL;
    for (size_t s = 0; s < self->n; s++) {
        for (int32_t o = self->opt_first[s]; o < self->opt_first[s + 1]; o++) {
            PyObject *item = Py_BuildValue("(nLdL)", (Py_ssize_t)s,
                                           (long long)self->opt_bytes[o], self->opt_save[o],
                                           (long long)self->opt_overlap[o]);
            if (item == NULL) {
                Py_DECREF(t);
                return NULL;
            }
            PyTuple_SET_ITEM(t, (Py_ssize_t)o, item);
        }
    }
    return t;
}

static PyObject *get_num_stages(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(((tb_chain_object *)op)->n);
}

static PyGetSetDef chain_getset[] = {
    {"num_stages", get_num_stages, NULL, "Number of stages L.", NULL},
    {"forward_cost", get_forward_cost, NULL, "Per-stage forward costs (tuple of floats).", NULL},
    {"backward_cost", get_backward_cost, NULL, "Per-stage backward costs (tuple of floats).",
     NULL},
    {"input_bytes", get_input_bytes, NULL, "Per-stage boundary input bytes (tuple of ints).",
     NULL},
    {"saved_bytes", get_saved_bytes, NULL, "Per-stage saved bytes (tuple of ints).", NULL},
    {"must_keep", get_must_keep, NULL, "Per-stage must_keep flags (tuple of bools) or None.",
     NULL},
    {"working_bytes", get_working_bytes, NULL,
     "Per-stage working bytes of the backward (tuple of ints) or None.", NULL},
    {"cut_before", get_cut_before, NULL,
     "Per-stage flags: no region spans boundary i (tuple of bools) or None.", NULL},
    {"live_intervals", get_live_intervals, NULL,
     "(producer, last_user, bytes) triples (tuple) or None for a plain chain.", NULL},
    {"options", get_options, NULL,
     "(stage, bytes, save, overlap) of single-stage top-level regions, grouped by stage "
     "(tuple), or None.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(chain_doc,
"Chain(forward_cost, backward_cost, input_bytes, saved_bytes, *, must_keep=None,\n"
"      live_intervals=None, options=None, working_bytes=None, cut_before=None)\n\n"
"An immutable chain of stages, copied and validated once; pass it to plan_chain,\n"
"simulate and min_budget instead of the four lists. Costs: numbers, finite, >= 0, whose\n"
"sum stays <= DBL_MAX / 4 / (L + 1); sizes: ints in [0, 2**52] bytes (their total too);\n"
"must_keep: bools; live_intervals: (producer, last_user, bytes) int tuples with\n"
"0 <= producer < last_user < L; options: (stage, bytes, save) tuples, stage < L,\n"
"0 <= save <= forward_cost[stage]: a region of that one stage at the top level may keep\n"
"`bytes` more from its forward to its backward and recompute for `save` less (options\n"
"are numbered per stage in the order given; a 4th entry, overlap <= bytes, is the part\n"
"of them that the stage's recomputation saves again); working_bytes: ints, per stage\n"
"the bytes its backward needs beyond its saved ones (gradients in flight); cut_before:\n"
"bools, True at i >= 1 = no region contains both stage i-1 and stage i. TypeError /\n"
"ValueError name the field and the index.");

static PyType_Slot chain_slots[] = {
    {Py_tp_new, chain_new},
    {Py_tp_dealloc, chain_dealloc},
    {Py_tp_repr, chain_repr},
    {Py_tp_getset, chain_getset},
    {Py_sq_length, chain_len},
    {Py_tp_doc, (void *)chain_doc},
    {0, NULL},
};

static PyType_Spec chain_spec = {
    .name = "tiny_backprop._C.Chain",
    .basicsize = sizeof(tb_chain_object),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = chain_slots,
};

int tb_py_chain_exec(PyObject *module)
{
    tb_module_state *st = tb_get_state(module);
    PyObject *type = PyType_FromModuleAndSpec(module, &chain_spec, NULL);
    if (type == NULL)
        return -1;
    st->types[TB_TYPE_CHAIN] = (PyTypeObject *)type; /* owns the reference */
    return PyModule_AddObjectRef(module, "Chain", type);
}
