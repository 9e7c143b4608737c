/* tiny_backprop._C.Accountant: the CPython face of csrc/core/accountant.c. */
#include "py_common.h"

#include "accountant.h"

typedef struct {
    PyObject_HEAD
    tb_accountant acct;
    int ready;
} AccountantObject;

static PyObject *acct_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, ":Accountant", kwlist))
        return NULL;
    AccountantObject *self = (AccountantObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    tb_status st = tb_acct_init(&self->acct, NULL);
    if (st != TB_OK) {
        Py_DECREF(self);
        return tb_raise_status(st, "Accountant()");
    }
    self->ready = 1;
    return (PyObject *)self;
}

static void acct_dealloc(PyObject *op)
{
    AccountantObject *self = (AccountantObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    if (self->ready)
        tb_acct_destroy(&self->acct);
    tp->tp_free(op);
    Py_DECREF(tp);
}

/* A storage key: a positive int that fits in 64 bits. */
static int parse_u64(PyObject *obj, const char *name, uint64_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be an int in 0..2**64-1", name);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

static PyObject *acct_hold(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    AccountantObject *self = (AccountantObject *)op;
    uint64_t key, bytes;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "hold(key, nbytes) takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (parse_u64(args[0], "key", &key) < 0 || parse_u64(args[1], "nbytes", &bytes) < 0)
        return NULL;
    if (key == 0) {
        PyErr_SetString(PyExc_ValueError, "hold: key must be a non-zero storage id");
        return NULL;
    }
    tb_status st = tb_acct_hold(&self->acct, key, bytes);
    if (st != TB_OK)
        return tb_raise_status(st, "Accountant.hold");
    Py_RETURN_NONE;
}

static PyObject *acct_release(PyObject *op, PyObject *arg)
{
    AccountantObject *self = (AccountantObject *)op;
    uint64_t key;
    if (parse_u64(arg, "key", &key) < 0)
        return NULL;
    tb_status st = tb_acct_release(&self->acct, key);
    if (st == TB_ERR_STATE || st == TB_ERR_INVALID) {
        PyErr_Format(PyExc_KeyError, "release: storage id %llu is not held",
                     (unsigned long long)key);
        return NULL;
    }
    if (st != TB_OK)
        return tb_raise_status(st, "Accountant.release");
    Py_RETURN_NONE;
}

static PyObject *acct_unpack(PyObject *op, PyObject *Py_UNUSED(arg))
{
    tb_acct_unpack(&((AccountantObject *)op)->acct);
    Py_RETURN_NONE;
}

static PyObject *acct_recompute(PyObject *op, PyObject *const *args, Py_ssize_t nargs)
{
    AccountantObject *self = (AccountantObject *)op;
    uint64_t bytes;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "recompute(nbytes, seconds) takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (parse_u64(args[0], "nbytes", &bytes) < 0)
        return NULL;
    double seconds = PyFloat_AsDouble(args[1]);
    if (seconds == -1.0 && PyErr_Occurred())
        return NULL;
    tb_status st = tb_acct_recompute(&self->acct, bytes, seconds);
    if (st == TB_ERR_INVALID) {
        PyErr_Format(PyExc_ValueError,
                     "recompute: seconds must be finite and >= 0, got %R", args[1]);
        return NULL;
    }
    if (st != TB_OK)
        return tb_raise_status(st, "Accountant.recompute");
    Py_RETURN_NONE;
}

static PyObject *acct_holds(PyObject *op, PyObject *arg)
{
    uint64_t key;
    if (parse_u64(arg, "key", &key) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(tb_acct_holds(&((AccountantObject *)op)->acct, key));
}

static PyObject *acct_reset_peak(PyObject *op, PyObject *Py_UNUSED(arg))
{
    tb_acct_reset_peak(&((AccountantObject *)op)->acct);
    Py_RETURN_NONE;
}

#define U64_GETTER(field)                                                        \
    static PyObject *acct_get_##field(PyObject *op, void *Py_UNUSED(closure))   \
    {                                                                           \
        return PyLong_FromUnsignedLongLong(((AccountantObject *)op)->acct.field); \
    }
U64_GETTER(live_bytes)
U64_GETTER(peak_bytes)
U64_GETTER(n_hold)
U64_GETTER(n_release)
U64_GETTER(n_unpack)
U64_GETTER(n_recompute)
U64_GETTER(recompute_bytes)

static PyObject *acct_get_recompute_seconds(PyObject *op, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(((AccountantObject *)op)->acct.recompute_seconds);
}

static PyObject *acct_get_n_live(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(((AccountantObject *)op)->acct.used);
}

static PyGetSetDef acct_getset[] = {
    {"live_bytes", acct_get_live_bytes, NULL, "bytes of storages held now", NULL},
    {"peak_bytes", acct_get_peak_bytes, NULL, "max live bytes since the last reset_peak", NULL},
    {"n_hold", acct_get_n_hold, NULL, "hold (pack / keep) events", NULL},
    {"n_release", acct_get_n_release, NULL, "release (free) events", NULL},
    {"n_unpack", acct_get_n_unpack, NULL, "unpack events", NULL},
    {"n_recompute", acct_get_n_recompute, NULL, "recompute events", NULL},
    {"recompute_bytes", acct_get_recompute_bytes, NULL, "bytes re-created by recomputation", NULL},
    {"recompute_seconds", acct_get_recompute_seconds, NULL, "seconds spent recomputing", NULL},
    {"n_live", acct_get_n_live, NULL, "storages held now", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef acct_methods[] = {
    {"hold", (PyCFunction)(void (*)(void))acct_hold, METH_FASTCALL,
     "hold(key: int, nbytes: int) -> None\n\nOne more hold of storage `key` (bytes)."},
    {"release", acct_release, METH_O,
     "release(key: int) -> None\n\nOne hold of `key` ends (KeyError if not held)."},
    {"unpack", acct_unpack, METH_NOARGS, "unpack() -> None\n\nCount an unpack event."},
    {"recompute", (PyCFunction)(void (*)(void))acct_recompute, METH_FASTCALL,
     "recompute(nbytes: int, seconds: float) -> None\n\nRecord one recomputation."},
    {"holds", acct_holds, METH_O, "holds(key: int) -> int\n\nLive holds of `key`."},
    {"reset_peak", acct_reset_peak, METH_NOARGS,
     "reset_peak() -> None\n\nPeak = live bytes; event counters and totals zeroed."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot acct_slots[] = {
    {Py_tp_new, acct_new},
    {Py_tp_dealloc, acct_dealloc},
    {Py_tp_methods, acct_methods},
    {Py_tp_getset, acct_getset},
    {Py_tp_doc, "Accountant()\n\nLive bytes of held storages keyed by storage id "
                "(shared storages count once), peak, and event counts."},
    {0, NULL},
};

static PyType_Spec acct_spec = {
    .name = "tiny_backprop._C.Accountant",
    .basicsize = sizeof(AccountantObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = acct_slots,
};

int tb_py_accountant_exec(PyObject *module)
{
    tb_module_state *st = tb_get_state(module);
    PyObject *type = PyType_FromModuleAndSpec(module, &acct_spec, NULL);
    if (type == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "Accountant", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    st->types[TB_TYPE_ACCOUNTANT] = (PyTypeObject *)type; /* owns the reference */
    return 0;
}
