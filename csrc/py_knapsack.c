/* tiny_backprop._C.knapsack: the CPython face of csrc/core/knapsack.c. */
#include "py_common.h"

#include <math.h>

#include "knapsack.h"

/* weights/values copied from a tuple copy of each sequence (a list mutated while being
 * read cannot crash us); TypeError/ValueError naming the field and index. */
static int read_items(PyObject *wobj, PyObject *vobj, size_t *n_out, int64_t **w_out,
                      double **v_out)
{
    PyObject *wt = PySequence_Tuple(wobj);
    if (wt == NULL)
        return -1;
    PyObject *vt = PySequence_Tuple(vobj);
    if (vt == NULL) {
        Py_DECREF(wt);
        return -1;
    }
    int rc = -1;
    int64_t *w = NULL;
    double *v = NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(wt);
    if (PyTuple_GET_SIZE(vt) != n) {
        PyErr_Format(PyExc_ValueError, "values has %zd entries, weights has %zd",
                     PyTuple_GET_SIZE(vt), n);
        goto done;
    }
    w = PyMem_Calloc((size_t)n + 1, sizeof(int64_t));
    v = PyMem_Calloc((size_t)n + 1, sizeof(double));
    if (w == NULL || v == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *wi = PyTuple_GET_ITEM(wt, i), *vi = PyTuple_GET_ITEM(vt, i);
        if (PyBool_Check(wi) || !PyLong_Check(wi)) {
            PyErr_Format(PyExc_TypeError, "weights[%zd] must be an int (bytes), not %.100s", i,
                         Py_TYPE(wi)->tp_name);
            goto done;
        }
        long long wv = PyLong_AsLongLong(wi);
        if (wv == -1 && PyErr_Occurred())
            goto done;
        if (wv < 0 || wv > ((long long)1 << 52)) {
            PyErr_Format(PyExc_ValueError, "weights[%zd] must be in [0, 2**52] bytes, got %lld",
                         i, wv);
            goto done;
        }
        if (PyBool_Check(vi) || !(PyFloat_Check(vi) || PyLong_Check(vi))) {
            PyErr_Format(PyExc_TypeError, "values[%zd] must be a number, not %.100s", i,
                         Py_TYPE(vi)->tp_name);
            goto done;
        }
        double vv = PyFloat_AsDouble(vi);
        if (vv == -1.0 && PyErr_Occurred())
            goto done;
        if (!isfinite(vv) || vv < 0.0) {
            PyErr_Format(PyExc_ValueError, "values[%zd] must be finite and >= 0, got %R", i, vi);
            goto done;
        }
        w[i] = (int64_t)wv;
        v[i] = vv;
    }
    *n_out = (size_t)n;
    *w_out = w;
    *v_out = v;
    w = NULL;
    v = NULL;
    rc = 0;
done:
    PyMem_Free(w);
    PyMem_Free(v);
    Py_DECREF(wt);
    Py_DECREF(vt);
    return rc;
}

PyDoc_STRVAR(knapsack_doc,
"knapsack(weights, values, capacity, slots=4096) -> (value, chosen)\n\n"
"0/1 knapsack: the items (weights in bytes, values >= 0) of largest total value whose\n"
"weights fit `capacity` bytes; weights are rounded up to units of ceil(capacity/slots)\n"
"bytes, so the chosen set always fits. `chosen` is a tuple of item indices, ascending.\n"
"Interruptible (Ctrl-C raises KeyboardInterrupt).");

static PyObject *py_knapsack(PyObject *module, PyObject *args, PyObject *kwds)
{
    (void)module;
    static char *kwlist[] = {"weights", "values", "capacity", "slots", NULL};
    PyObject *wobj, *vobj;
    long long capacity, slots = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOL|L:knapsack", kwlist, &wobj, &vobj,
                                     &capacity, &slots))
        return NULL;
    if (capacity < 0) {
        PyErr_Format(PyExc_ValueError, "capacity must be >= 0 bytes, got %lld", capacity);
        return NULL;
    }
    if (slots < 1 || slots > TB_KNAPSACK_MAX_SLOTS) {
        PyErr_Format(PyExc_ValueError, "slots must be in [1, %d], got %lld",
                     TB_KNAPSACK_MAX_SLOTS, slots);
        return NULL;
    }
    size_t n = 0;
    int64_t *w = NULL;
    double *v = NULL;
    if (read_items(wobj, vobj, &n, &w, &v) < 0)
        return NULL;
    PyObject *result = NULL;
    uint8_t *chosen = PyMem_Calloc(n + 1, 1);
    if (chosen == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double value = 0.0;
    tb_glue_stop s;
    tb_stop stop = {tb_glue_should_stop, &s};
    s.ts = PyEval_SaveThread();
    tb_status st = tb_knapsack(NULL, &stop, n, w, v, (int64_t)capacity, (int64_t)slots, &value,
                               chosen);
    PyEval_RestoreThread(s.ts);
    if (st != TB_OK) {
        tb_raise_status(st, "knapsack");
        goto done;
    }
    Py_ssize_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += chosen[i] != 0;
    PyObject *idx = PyTuple_New(k);
    if (idx == NULL)
        goto done;
    Py_ssize_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (!chosen[i])
            continue;
        PyObject *o = PyLong_FromSize_t(i);
        if (o == NULL) {
            Py_DECREF(idx);
            goto done;
        }
        PyTuple_SET_ITEM(idx, j++, o);
    }
    result = Py_BuildValue("(dN)", value, idx);
done:
    PyMem_Free(chosen);
    PyMem_Free(w);
    PyMem_Free(v);
    return result;
}

static PyMethodDef knapsack_methods[] = {
    {"knapsack", (PyCFunction)(void (*)(void))py_knapsack, METH_VARARGS | METH_KEYWORDS,
     knapsack_doc},
    {NULL, NULL, 0, NULL},
};

int tb_py_knapsack_exec(PyObject *module)
{
    return PyModule_AddFunctions(module, knapsack_methods);
}
