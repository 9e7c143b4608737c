/* tiny_backprop._C.Graph: the CPython face of csrc/core/graph.{h,c}.
 * Converts Python sequences to plain arrays (never modifying them), validates them
 * with messages that name the argument and the index, and maps core status codes to
 * exceptions. Holds no Python objects, so no GC support is needed. */
#include "py_common.h"

#include <math.h>

#include "graph.h"

typedef struct {
    PyObject_HEAD
    tb_graph *g;
} GraphObject;

/* ---- argument conversion -------------------------------------------------------- */

/* A tuple copy of `obj` (new reference) or NULL + TypeError naming `name`. A copy, not
 * PySequence_Fast's view of a list: an item's __index__/__float__ may mutate or clear the
 * caller's list while we read it, never our tuple (which also keeps the items alive). */
static PyObject *as_fast_sequence(PyObject *obj, const char *name, const char *what)
{
    if (PyUnicode_Check(obj) || PyBytes_Check(obj) || !PySequence_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of %s (a list or tuple), got %.100s",
                     name, what, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return PySequence_Tuple(obj);
}

/* An int item >= 0 (bytes) into *out; 0 or -1 with an exception. */
static int item_int64(PyObject *item, const char *name, Py_ssize_t i, int64_t *out)
{
    if (PyBool_Check(item) || !PyIndex_Check(item)) {
        PyErr_Format(PyExc_TypeError, "%s[%zd] must be an int (bytes), got %.100s", name, i,
                     Py_TYPE(item)->tp_name);
        return -1;
    }
    PyObject *num = PyNumber_Index(item);
    if (num == NULL)
        return -1;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(num, &overflow);
    Py_DECREF(num);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow > 0) {
        PyErr_Format(PyExc_ValueError, "%s[%zd] is too large: at most 2**63 - 1 bytes", name, i);
        return -1;
    }
    if (overflow < 0 || v < 0) {
        if (overflow < 0)
            PyErr_Format(PyExc_ValueError, "%s[%zd] must be >= 0, got a huge negative int",
                         name, i);
        else
            PyErr_Format(PyExc_ValueError, "%s[%zd] must be >= 0, got %lld", name, i, v);
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

static int parse_int64s(PyObject *seq, const char *name, Py_ssize_t n, int64_t *out)
{
    for (Py_ssize_t i = 0; i < n; i++)
        if (item_int64(PySequence_Fast_GET_ITEM(seq, i), name, i, &out[i]) < 0)
            return -1;
    return 0;
}

static int parse_costs(PyObject *seq, Py_ssize_t n, double *out)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (PyBool_Check(item) || !(PyFloat_Check(item) || PyLong_Check(item))) {
            PyErr_Format(PyExc_TypeError, "cost[%zd] must be a float or int, got %.100s", i,
                         Py_TYPE(item)->tp_name);
            return -1;
        }
        double c = PyFloat_AsDouble(item);
        if (c == -1.0 && PyErr_Occurred())
            return -1;
        if (!isfinite(c) || c < 0.0) {
            PyObject *r = PyObject_Repr(item);
            if (r == NULL)
                return -1;
            PyErr_Format(PyExc_ValueError, "cost[%zd] must be finite and >= 0, got %U", i, r);
            Py_DECREF(r);
            return -1;
        }
        out[i] = c;
    }
    return 0;
}

static int parse_flags(PyObject *seq, Py_ssize_t n, uint32_t *out)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t f = 0;
        if (item_int64(PySequence_Fast_GET_ITEM(seq, i), "flags", i, &f) < 0)
            return -1;
        if (f & ~(int64_t)TB_FLAG_ALL) {
            PyErr_Format(PyExc_ValueError,
                         "flags[%zd] has unknown bits (value %lld, unknown part %lld); known "
                         "flags are the FLAG_* bits of tiny_backprop.ir, combined: 0..%d",
                         i, (long long)f, (long long)(f & ~(int64_t)TB_FLAG_ALL),
                         (int)TB_FLAG_ALL);
            return -1;
        }
        out[i] = (uint32_t)f;
    }
    return 0;
}

/* inputs: a sequence of n sequences of node ids -> CSR (PyMem-allocated *idx). */
static int parse_inputs(PyObject *seq, Py_ssize_t n, int64_t *off, int64_t **idx_out)
{
    *idx_out = NULL;
    PyObject **rows = PyMem_Calloc((size_t)n + 1, sizeof(PyObject *));
    if (rows == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int rc = -1;
    int64_t *idx = NULL;
    char name[64];
    off[0] = 0;
    for (Py_ssize_t v = 0; v < n; v++) {
        PyOS_snprintf(name, sizeof name, "inputs[%zd]", v);
        rows[v] = as_fast_sequence(PySequence_Fast_GET_ITEM(seq, v), name, "node ids");
        if (rows[v] == NULL)
            goto done;
        off[v + 1] = off[v] + (int64_t)PySequence_Fast_GET_SIZE(rows[v]);
    }
    idx = PyMem_Calloc((size_t)off[n] + 1, sizeof(int64_t));
    if (idx == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t v = 0; v < n; v++) {
        Py_ssize_t k = PySequence_Fast_GET_SIZE(rows[v]);
        for (Py_ssize_t j = 0; j < k; j++) {
            PyObject *item = PySequence_Fast_GET_ITEM(rows[v], j);
            if (PyBool_Check(item) || !PyIndex_Check(item)) {
                PyErr_Format(PyExc_TypeError, "inputs[%zd][%zd] must be an int node id, got %.100s",
                             v, j, Py_TYPE(item)->tp_name);
                goto done;
            }
            Py_ssize_t u = PyNumber_AsSsize_t(item, NULL); /* clamps huge values */
            if (u == -1 && PyErr_Occurred())
                goto done;
            if (u < 0 || u >= n) {
                if (n == 0)
                    PyErr_Format(PyExc_ValueError, "inputs[%zd] has node id %zd but there are no nodes",
                                 v, u);
                else
                    PyErr_Format(PyExc_ValueError,
                                 "inputs[%zd] has node id %zd but there are only %zd nodes "
                                 "(ids 0..%zd)",
                                 v, u, n, n - 1);
                goto done;
            }
            if (u == v) {
                PyErr_Format(PyExc_ValueError,
                             "inputs[%zd] lists node %zd itself (a self-loop); a node can only "
                             "read other nodes' outputs",
                             v, v);
                goto done;
            }
            idx[off[v] + j] = (int64_t)u;
        }
    }
    *idx_out = idx;
    idx = NULL;
    rc = 0;
done:
    for (Py_ssize_t v = 0; v < n; v++)
        Py_XDECREF(rows[v]);
    PyMem_Free(rows);
    PyMem_Free(idx);
    return rc;
}

/* ---- the type ----------------------------------------------------------------- */

static PyObject *Graph_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"output_bytes", "saved_bytes", "cost", "flags", "inputs", NULL};
    PyObject *a_out, *a_saved, *a_cost, *a_flags, *a_inputs;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOO:Graph", kwlist, &a_out, &a_saved,
                                     &a_cost, &a_flags, &a_inputs))
        return NULL;

    PyObject *result = NULL;
    PyObject *s_out = NULL, *s_saved = NULL, *s_cost = NULL, *s_flags = NULL, *s_inputs = NULL;
    int64_t *out = NULL, *saved = NULL, *off = NULL, *idx = NULL;
    double *cost = NULL;
    uint32_t *flags = NULL;
    tb_graph *g = NULL;

    s_out = as_fast_sequence(a_out, "output_bytes", "ints (bytes)");
    if (s_out == NULL)
        goto done;
    s_saved = as_fast_sequence(a_saved, "saved_bytes", "ints (bytes)");
    if (s_saved == NULL)
        goto done;
    s_cost = as_fast_sequence(a_cost, "cost", "floats");
    if (s_cost == NULL)
        goto done;
    s_flags = as_fast_sequence(a_flags, "flags", "ints (FLAG_* bit sets)");
    if (s_flags == NULL)
        goto done;
    s_inputs = as_fast_sequence(a_inputs, "inputs", "sequences of node ids");
    if (s_inputs == NULL)
        goto done;

    Py_ssize_t n = PySequence_Fast_GET_SIZE(s_out);
    struct {
        PyObject *seq;
        const char *name;
    } others[] = {{s_saved, "saved_bytes"}, {s_cost, "cost"}, {s_flags, "flags"},
                  {s_inputs, "inputs"}};
    for (size_t k = 0; k < sizeof others / sizeof others[0]; k++) {
        Py_ssize_t m = PySequence_Fast_GET_SIZE(others[k].seq);
        if (m != n) {
            PyErr_Format(PyExc_ValueError,
                         "%s has %zd entries but output_bytes has %zd; give one entry per node",
                         others[k].name, m, n);
            goto done;
        }
    }

    out = PyMem_Calloc((size_t)n + 1, sizeof(int64_t));
    saved = PyMem_Calloc((size_t)n + 1, sizeof(int64_t));
    off = PyMem_Calloc((size_t)n + 1, sizeof(int64_t));
    cost = PyMem_Calloc((size_t)n + 1, sizeof(double));
    flags = PyMem_Calloc((size_t)n + 1, sizeof(uint32_t));
    if (out == NULL || saved == NULL || off == NULL || cost == NULL || flags == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (parse_int64s(s_out, "output_bytes", n, out) < 0 ||
        parse_int64s(s_saved, "saved_bytes", n, saved) < 0 || parse_costs(s_cost, n, cost) < 0 ||
        parse_flags(s_flags, n, flags) < 0 || parse_inputs(s_inputs, n, off, &idx) < 0)
        goto done;

    tb_status st = tb_graph_create(NULL, (int64_t)n, out, saved, cost, flags, off, idx, &g);
    if (st == TB_ERR_CYCLE) {
        PyErr_SetString(PyExc_ValueError,
                        "inputs describe a cycle: the graph must be a DAG (every node's inputs "
                        "must be computable before it)");
        goto done;
    }
    if (st == TB_ERR_OVERFLOW) {
        PyErr_SetString(PyExc_ValueError,
                        "output_bytes and saved_bytes add up to more than 2**63 - 1 bytes");
        goto done;
    }
    if (st != TB_OK) {
        tb_raise_status(st, "Graph");
        goto done;
    }
    GraphObject *self = (GraphObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        goto done;
    self->g = g;
    g = NULL;
    result = (PyObject *)self;
done:
    tb_graph_destroy(g);
    Py_XDECREF(s_out);
    Py_XDECREF(s_saved);
    Py_XDECREF(s_cost);
    Py_XDECREF(s_flags);
    Py_XDECREF(s_inputs);
    PyMem_Free(out);
    PyMem_Free(saved);
    PyMem_Free(off);
    PyMem_Free(idx);
    PyMem_Free(cost);
    PyMem_Free(flags);
    return result;
}

static void Graph_dealloc(PyObject *op)
{
    GraphObject *self = (GraphObject *)op;
    PyTypeObject *tp = Py_TYPE(op);
    tb_graph_destroy(self->g);
    self->g = NULL;
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
    tp_free(op);
    Py_DECREF(tp);
}

static PyObject *int64_list(const int64_t *a, int64_t n)
{
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (list == NULL)
        return NULL;
    for (int64_t i = 0; i < n; i++) {
        PyObject *x = PyLong_FromLongLong((long long)a[i]);
        if (x == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, x);
    }
    return list;
}

static PyObject *Graph_num_nodes(PyObject *op, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong((long long)((GraphObject *)op)->g->n);
}

static PyObject *Graph_topo_order(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    tb_graph *g = ((GraphObject *)op)->g;
    return int64_list(g->order, g->n);
}

static PyObject *Graph_frontier_bytes(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    tb_graph *g = ((GraphObject *)op)->g;
    return int64_list(g->frontier, g->n);
}

static PyObject *Graph_store_all_peak(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong((long long)((GraphObject *)op)->g->store_all_peak);
}

static PyObject *Graph_lower_bound(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong((long long)((GraphObject *)op)->g->lower_bound);
}

/* Shared by coarsen and coarsen_chain: the stage list, and (intervals != NULL) the
 * live-interval list. */
static PyObject *coarsen_impl(PyObject *op, PyObject *arg, PyObject **intervals)
{
    tb_graph *g = ((GraphObject *)op)->g;
    if (PyBool_Check(arg) || !PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "max_stages must be an int >= 1, got %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    int overflow = 0;
    long long m = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (m == -1 && PyErr_Occurred())
        return NULL;
    if (overflow > 0)
        m = INT64_MAX;
    if (overflow < 0 || m < 1) {
        PyErr_Format(PyExc_ValueError, "max_stages must be >= 1, got %R", arg);
        return NULL;
    }
    tb_stage *stages = NULL;
    int64_t L = 0, n_iv = 0;
    int64_t *iv = NULL;
    PyObject *list = NULL, *ivlist = NULL;
    tb_status st = tb_graph_coarsen(g, (int64_t)m, &stages, &L);
    if (st != TB_OK)
        return tb_raise_status(st, "Graph.coarsen");
    if (intervals != NULL) {
        st = tb_graph_live_intervals(g, stages, L, &iv, &n_iv);
        if (st != TB_OK) {
            tb_raise_status(st, "Graph.coarsen_chain");
            goto error;
        }
    }
    list = PyList_New((Py_ssize_t)L);
    if (list == NULL)
        goto error;
    for (int64_t i = 0; i < L; i++) {
        const tb_stage *s = &stages[i];
        PyObject *t = Py_BuildValue("(LLddLLO)", (long long)s->start, (long long)s->end,
                                    s->forward_cost, s->backward_cost, (long long)s->input_bytes,
                                    (long long)s->saved_bytes,
                                    s->never_recompute ? Py_True : Py_False);
        if (t == NULL)
            goto error;
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    if (intervals != NULL) {
        ivlist = PyList_New((Py_ssize_t)n_iv);
        if (ivlist == NULL)
            goto error;
        for (int64_t i = 0; i < n_iv; i++) {
            PyObject *t = Py_BuildValue("(LLL)", (long long)iv[3 * i], (long long)iv[3 * i + 1],
                                        (long long)iv[3 * i + 2]);
            if (t == NULL)
                goto error;
            PyList_SET_ITEM(ivlist, (Py_ssize_t)i, t);
        }
        *intervals = ivlist;
    }
    tb_graph_free_stages(g, stages);
    tb_graph_free_intervals(g, iv);
    return list;
error:
    Py_XDECREF(list);
    Py_XDECREF(ivlist);
    tb_graph_free_stages(g, stages);
    tb_graph_free_intervals(g, iv);
    return NULL;
}

static PyObject *Graph_coarsen(PyObject *op, PyObject *arg)
{
    return coarsen_impl(op, arg, NULL);
}

static PyObject *Graph_coarsen_chain(PyObject *op, PyObject *arg)
{
    PyObject *iv = NULL;
    PyObject *stages = coarsen_impl(op, arg, &iv);
    if (stages == NULL)
        return NULL;
    PyObject *res = PyTuple_Pack(2, stages, iv);
    Py_DECREF(stages);
    Py_DECREF(iv);
    return res;
}

static PyObject *Graph_repr(PyObject *op)
{
    tb_graph *g = ((GraphObject *)op)->g;
    return PyUnicode_FromFormat("<tiny_backprop._C.Graph: %lld nodes, %lld edges>",
                                (long long)g->n, (long long)g->n_edges);
}

static PyMethodDef Graph_methods[] = {
    {"topo_order", Graph_topo_order, METH_NOARGS,
     "topo_order() -> list[int]\n\nNode ids in the topological order the analysis uses."},
    {"frontier_bytes", Graph_frontier_bytes, METH_NOARGS,
     "frontier_bytes() -> list[int]\n\nBytes live after each position of topo_order()."},
    {"store_all_peak", Graph_store_all_peak, METH_NOARGS,
     "store_all_peak() -> int\n\nPeak bytes of one forward + backward that keeps everything."},
    {"lower_bound", Graph_lower_bound, METH_NOARGS,
     "lower_bound() -> int\n\nBytes below which no schedule of this graph can peak."},
    {"coarsen", Graph_coarsen, METH_O,
     "coarsen(max_stages: int) -> list[tuple[int, int, float, float, int, int, bool]]\n\n"
     "At most max_stages stages (start, end, forward_cost, backward_cost, input_bytes,\n"
     "saved_bytes, never_recompute) over positions [start, end) of topo_order()."},
    {"coarsen_chain", Graph_coarsen_chain, METH_O,
     "coarsen_chain(max_stages: int) -> (stages, live_intervals)\n\n"
     "coarsen(max_stages) and its live intervals: sorted (producer_stage, last_user_stage,\n"
     "bytes) for every non-input value crossing a stage boundary (see graph.h)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Graph_getset[] = {
    {"num_nodes", Graph_num_nodes, NULL, "Number of nodes.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(Graph_doc,
             "Graph(output_bytes, saved_bytes, cost, flags, inputs)\n\n"
             "A computation graph for the C core. output_bytes[v]: bytes of node v's outputs;\n"
             "saved_bytes[v]: bytes autograd saves for v that are not graph values; cost[v]:\n"
             "forward cost (FLOPs or a proxy); flags[v]: FLAG_* bits of tiny_backprop.ir;\n"
             "inputs[v]: ids of the nodes v reads. The arguments are copied, never modified.");

static PyType_Slot Graph_slots[] = {
    {Py_tp_doc, (void *)Graph_doc},
    {Py_tp_new, Graph_new},
    {Py_tp_dealloc, Graph_dealloc},
    {Py_tp_repr, Graph_repr},
    {Py_tp_methods, Graph_methods},
    {Py_tp_getset, Graph_getset},
    {0, NULL},
};

static PyType_Spec Graph_spec = {
    .name = "tiny_backprop._C.Graph",
    .basicsize = sizeof(GraphObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = Graph_slots,
};

int tb_py_graph_exec(PyObject *module)
{
    tb_module_state *st = tb_get_state(module);
    PyObject *type = PyType_FromModuleAndSpec(module, &Graph_spec, NULL);
    if (type == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "Graph", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    Py_XSETREF(st->types[TB_TYPE_GRAPH], (PyTypeObject *)type);
    return 0;
}
