/* CPython glue of the planner: plan_chain, min_budget, simulate, PLANNERS.
 * Only numbers cross the boundary: costs as floats, sizes as ints (bytes). Plan trees
 * travel as tuples of (kind, start, end) in preorder (kind 0 = Keep, 1 = Region). */
#include "py_common.h"

#include <math.h>
#include <string.h>

#include "planner.h"

static const char *const planner_names[] = {"optimal", "store_all", "per_stage", "sqrt",
                                            "tree"};
#define N_PLANNERS 5

/* Arrays parsed from Python; freed with chain_args_free. */
typedef struct chain_args {
    tb_chain chain;
    double *f, *b;
    int64_t *x, *g;
    uint8_t *mk;
    int64_t *live;
} chain_args;

static void chain_args_free(chain_args *ca)
{
    PyMem_Free(ca->f);
    PyMem_Free(ca->b);
    PyMem_Free(ca->x);
    PyMem_Free(ca->g);
    PyMem_Free(ca->mk);
    PyMem_Free(ca->live);
    memset(ca, 0, sizeof(*ca));
}

/* Length of a sequence argument, or -1 with TypeError. */
static Py_ssize_t seq_len(PyObject *obj, const char *name)
{
    if (!PySequence_Check(obj) || PyUnicode_Check(obj) || PyBytes_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of numbers, not %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    return PySequence_Size(obj);
}

static double *parse_costs(PyObject *obj, const char *name, Py_ssize_t n)
{
    PyObject *fast = PySequence_Fast(obj, name);
    if (fast == NULL)
        return NULL;
    double *out = NULL;
    if (PySequence_Fast_GET_SIZE(fast) != n) {
        PyErr_Format(PyExc_ValueError, "%s has %zd entries, expected %zd", name,
                     PySequence_Fast_GET_SIZE(fast), n);
        goto error;
    }
    out = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(double));
    if (out == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i); /* borrowed */
        if (PyBool_Check(item) || !(PyFloat_Check(item) || PyLong_Check(item))) {
            PyErr_Format(PyExc_TypeError, "%s[%zd] must be a number, not %.100s", name, i,
                         Py_TYPE(item)->tp_name);
            goto error;
        }
        double v = PyFloat_AsDouble(item);
        if (v == -1.0 && PyErr_Occurred())
            goto error;
        if (!isfinite(v) || v < 0) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] must be finite and >= 0, got %R", name, i,
                         item);
            goto error;
        }
        out[i] = v;
    }
    Py_DECREF(fast);
    return out;
error:
    PyMem_Free(out);
    Py_DECREF(fast);
    return NULL;
}

static int64_t *parse_sizes(PyObject *obj, const char *name, Py_ssize_t n)
{
    PyObject *fast = PySequence_Fast(obj, name);
    if (fast == NULL)
        return NULL;
    int64_t *out = NULL;
    if (PySequence_Fast_GET_SIZE(fast) != n) {
        PyErr_Format(PyExc_ValueError, "%s has %zd entries, expected %zd", name,
                     PySequence_Fast_GET_SIZE(fast), n);
        goto error;
    }
    out = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    if (out == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i); /* borrowed */
        if (PyBool_Check(item) || !PyLong_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s[%zd] must be an int (bytes), not %.100s", name, i,
                         Py_TYPE(item)->tp_name);
            goto error;
        }
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(item, &overflow);
        if (v == -1 && PyErr_Occurred())
            goto error;
        if (overflow || v < 0 || v > TB_MAX_BYTES) {
            PyErr_Format(PyExc_ValueError, "%s[%zd] must be in [0, 2**52] bytes, got %R", name,
                         i, item);
            goto error;
        }
        out[i] = (int64_t)v;
    }
    Py_DECREF(fast);
    return out;
error:
    PyMem_Free(out);
    Py_DECREF(fast);
    return NULL;
}

static uint8_t *parse_flags(PyObject *obj, const char *name, Py_ssize_t n)
{
    PyObject *fast = PySequence_Fast(obj, name);
    if (fast == NULL)
        return NULL;
    uint8_t *out = NULL;
    if (PySequence_Fast_GET_SIZE(fast) != n) {
        PyErr_Format(PyExc_ValueError, "%s has %zd entries, expected %zd", name,
                     PySequence_Fast_GET_SIZE(fast), n);
        goto error;
    }
    out = PyMem_Malloc((size_t)(n ? n : 1));
    if (out == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int v = PyObject_IsTrue(PySequence_Fast_GET_ITEM(fast, i));
        if (v < 0)
            goto error;
        out[i] = (uint8_t)v;
    }
    Py_DECREF(fast);
    return out;
error:
    PyMem_Free(out);
    Py_DECREF(fast);
    return NULL;
}

/* live_intervals: a sequence of (j, u, bytes) int triples, 0 <= j < u < n, bytes in
 * [0, 2**52]. Returns a PyMem array of 3 * *count entries (NULL + exception on error). */
static int64_t *parse_live(PyObject *obj, Py_ssize_t n, size_t *count)
{
    const char *name = "live_intervals";
    if (!PySequence_Check(obj) || PyUnicode_Check(obj) || PyBytes_Check(obj)) {
        PyErr_Format(PyExc_TypeError,
                     "%s must be a sequence of (producer, last_user, bytes) tuples, not %.100s",
                     name, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyObject *fast = PySequence_Fast(obj, name);
    if (fast == NULL)
        return NULL;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(fast);
    int64_t *out = NULL;
    if ((size_t)m > TB_MAX_LIVE) {
        PyErr_Format(PyExc_ValueError, "%s: at most %d intervals, got %zd", name, TB_MAX_LIVE, m);
        goto error;
    }
    out = PyMem_Malloc((size_t)(m ? 3 * m : 1) * sizeof(int64_t));
    if (out == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i); /* borrowed */
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_Format(PyExc_TypeError,
                         "%s[%zd] must be a (producer, last_user, bytes) tuple, not %.100s",
                         name, i, Py_TYPE(item)->tp_name);
            goto error;
        }
        for (int k = 0; k < 3; k++) {
            PyObject *v = PyTuple_GET_ITEM(item, k);
            if (PyBool_Check(v) || !PyLong_Check(v)) {
                PyErr_Format(PyExc_TypeError, "%s[%zd][%d] must be an int, not %.100s", name,
                             i, k, Py_TYPE(v)->tp_name);
                goto error;
            }
            int overflow = 0;
            long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
            if (x == -1 && PyErr_Occurred())
                goto error;
            if (overflow || x < 0 || x > TB_MAX_BYTES) {
                PyErr_Format(PyExc_ValueError, "%s[%zd][%d] must be in [0, 2**52], got %R",
                             name, i, k, v);
                goto error;
            }
            out[3 * i + k] = (int64_t)x;
        }
        if (out[3 * i] >= out[3 * i + 1] || out[3 * i + 1] >= (int64_t)n) {
            PyErr_Format(PyExc_ValueError,
                         "%s[%zd]: need 0 <= producer < last_user < %zd (stages), got %R",
                         name, i, n, item);
            goto error;
        }
    }
    *count = (size_t)m;
    Py_DECREF(fast);
    return out;
error:
    PyMem_Free(out);
    Py_DECREF(fast);
    return NULL;
}

/* Parses the four chain arrays (+ optional must_keep, live_intervals). 0, or -1 with an
 * exception. */
static int parse_chain(PyObject *f, PyObject *b, PyObject *x, PyObject *g, PyObject *mk,
                       PyObject *live, chain_args *ca)
{
    memset(ca, 0, sizeof(*ca));
    Py_ssize_t n = seq_len(f, "forward_cost");
    if (n < 0)
        return -1;
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "forward_cost: the chain is empty");
        return -1;
    }
    if (n > TB_MAX_STAGES) {
        PyErr_Format(PyExc_ValueError, "forward_cost: at most %d stages, got %zd",
                     TB_MAX_STAGES, n);
        return -1;
    }
    if (seq_len(b, "backward_cost") < 0 || seq_len(x, "input_bytes") < 0 ||
        seq_len(g, "saved_bytes") < 0)
        return -1;
    if (mk != Py_None && seq_len(mk, "must_keep") < 0)
        return -1;
    if ((ca->f = parse_costs(f, "forward_cost", n)) == NULL ||
        (ca->b = parse_costs(b, "backward_cost", n)) == NULL ||
        (ca->x = parse_sizes(x, "input_bytes", n)) == NULL ||
        (ca->g = parse_sizes(g, "saved_bytes", n)) == NULL)
        goto error;
    if (mk != Py_None && (ca->mk = parse_flags(mk, "must_keep", n)) == NULL)
        goto error;
    size_t n_live = 0;
    if (live != Py_None && (ca->live = parse_live(live, n, &n_live)) == NULL)
        goto error;
    ca->chain = (tb_chain){(size_t)n, ca->f, ca->b, ca->x, ca->g, ca->mk, n_live, ca->live};
    tb_status st = tb_chain_check(&ca->chain);
    if (st != TB_OK) {
        tb_raise_status(st, "chain (sum of input_bytes, saved_bytes and live_intervals bytes "
                            "must stay <= 2**52)");
        goto error;
    }
    return 0;
error:
    chain_args_free(ca);
    return -1;
}

static PyObject *tree_to_tuple(const tb_plan_tree *tree)
{
    PyObject *out = PyTuple_New((Py_ssize_t)tree->n_nodes);
    if (out == NULL)
        return NULL;
    for (size_t j = 0; j < tree->n_nodes; j++) {
        PyObject *item = Py_BuildValue("(iii)", (int)tree->kind[j], (int)tree->start[j],
                                       (int)tree->end[j]);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, (Py_ssize_t)j, item); /* steals */
    }
    return out;
}

/* A tuple/sequence of (kind, start, end) triples into a tree (PyMem-free via the
 * default allocator: the core's NULL allocator is malloc/free). */
static int tuple_to_tree(PyObject *nodes, tb_plan_tree *tree)
{
    memset(tree, 0, sizeof(*tree));
    PyObject *fast = PySequence_Fast(nodes, "nodes must be a sequence of (kind, start, end)");
    if (fast == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n == 0 || n > 4 * TB_MAX_STAGES + 4) {
        PyErr_SetString(PyExc_ValueError, "nodes: a plan tree needs 1..4*L+4 nodes");
        goto error;
    }
    size_t cap = (size_t)n;
    tree->kind = tb_malloc(NULL, cap);
    tree->start = tb_malloc(NULL, cap * sizeof(int32_t));
    tree->end = tb_malloc(NULL, cap * sizeof(int32_t));
    if (tree->kind == NULL || tree->start == NULL || tree->end == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    tree->cap = cap;
    for (Py_ssize_t j = 0; j < n; j++) {
        int k, s, e;
        PyObject *item = PySequence_Fast_GET_ITEM(fast, j); /* borrowed */
        if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "iii", &k, &s, &e)) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "nodes[%zd] must be a (kind, start, end) tuple",
                             j);
            goto error;
        }
        if (k != TB_NODE_KEEP && k != TB_NODE_REGION) {
            PyErr_Format(PyExc_ValueError, "nodes[%zd]: kind must be 0 (Keep) or 1 (Region)", j);
            goto error;
        }
        tree->kind[j] = (uint8_t)k;
        tree->start[j] = s;
        tree->end[j] = e;
    }
    tree->n_nodes = cap;
    Py_DECREF(fast);
    return 0;
error:
    tb_plan_tree_free(NULL, tree);
    Py_DECREF(fast);
    return -1;
}

static int planner_from_name(const char *name)
{
    for (int i = 0; i < N_PLANNERS; i++)
        if (strcmp(name, planner_names[i]) == 0)
            return i;
    return -1;
}

PyDoc_STRVAR(plan_chain_doc,
"plan_chain(forward_cost, backward_cost, input_bytes, saved_bytes, budget, planner='optimal',\n"
"           slots=512, must_keep=None, height=-1, live_intervals=None)\n"
"    -> (nodes, planned_cost, cost, peak) | None\n\n"
"Plan a chain. nodes: preorder (kind, start, end) triples (kind 0 = Keep, 1 = Region).\n"
"planned_cost: the DP's value (optimal) or the simulated cost (baselines); cost, peak: the\n"
"simulator's total cost and peak bytes. None when 'optimal' finds no schedule in budget\n"
"(memory discretised into slots). height < 0 = ceil(log2 L) for 'tree'.\n"
"live_intervals: (producer, last_user, bytes) per value crossing a boundary (DAG\n"
"accounting: a boundary is charged only for what is new since the held one).");

static PyObject *py_plan_chain(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"forward_cost", "backward_cost", "input_bytes", "saved_bytes",
                             "budget", "planner", "slots", "must_keep", "height",
                             "live_intervals", NULL};
    PyObject *f, *b, *x, *g, *mk = Py_None, *live = Py_None;
    long long budget;
    const char *planner = "optimal";
    Py_ssize_t slots = 512;
    int height = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOL|snOiO:plan_chain", kwlist, &f, &b, &x,
                                     &g, &budget, &planner, &slots, &mk, &height, &live))
        return NULL;
    int kind = planner_from_name(planner);
    if (kind < 0) {
        PyErr_Format(PyExc_ValueError,
                     "planner must be one of 'optimal', 'store_all', 'per_stage', 'sqrt', "
                     "'tree'; got '%s'", planner);
        return NULL;
    }
    if (budget < 0) {
        PyErr_SetString(PyExc_ValueError, "budget must be >= 0 bytes");
        return NULL;
    }
    if (slots < 1 || slots > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "slots must be in [1, 2**24]");
        return NULL;
    }
    chain_args ca;
    if (parse_chain(f, b, x, g, mk, live, &ca) < 0)
        return NULL;
    size_t n = ca.chain.n;
    if (kind == TB_PLANNER_TREE && height < 0) {
        height = 0;
        while (((size_t)1 << height) < n)
            height++;
    }
    tb_plan_tree tree = {0};
    double planned = 0.0, cost = 0.0;
    int64_t peak = 0;
    tb_status st;
    PyObject *result = NULL;
    Py_BEGIN_ALLOW_THREADS
    if (kind == TB_PLANNER_OPTIMAL)
        st = tb_plan_optimal(NULL, &ca.chain, (int64_t)budget, (int64_t)slots, &planned, &tree);
    else
        st = tb_plan_baseline(NULL, &ca.chain, (tb_planner_kind)kind, height, &tree);
    if (st == TB_OK)
        st = tb_simulate(NULL, &ca.chain, &tree, &cost, &peak);
    Py_END_ALLOW_THREADS
    if (st == TB_ERR_INFEASIBLE) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (st != TB_OK) {
        tb_raise_status(st, "plan_chain");
        goto done;
    }
    if (kind != TB_PLANNER_OPTIMAL)
        planned = cost;
    PyObject *nodes = tree_to_tuple(&tree);
    if (nodes == NULL)
        goto done;
    result = Py_BuildValue("(NddL)", nodes, planned, cost, (long long)peak);
done:
    tb_plan_tree_free(NULL, &tree);
    chain_args_free(&ca);
    return result;
}

PyDoc_STRVAR(min_budget_doc,
"min_budget(forward_cost, backward_cost, input_bytes, saved_bytes, must_keep=None,\n"
"           live_intervals=None)\n"
"    -> (min_bytes, cost, nodes)\n\n"
"Smallest budget (exact bytes) for which the model has a schedule, the cost of the\n"
"schedule found for it, and that schedule as preorder (kind, start, end) triples.");

static PyObject *py_min_budget(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"forward_cost", "backward_cost", "input_bytes", "saved_bytes",
                             "must_keep", "live_intervals", NULL};
    PyObject *f, *b, *x, *g, *mk = Py_None, *live = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|OO:min_budget", kwlist, &f, &b, &x, &g,
                                     &mk, &live))
        return NULL;
    chain_args ca;
    if (parse_chain(f, b, x, g, mk, live, &ca) < 0)
        return NULL;
    tb_plan_tree tree = {0};
    int64_t mb = 0;
    double cost = 0.0;
    tb_status st;
    PyObject *result = NULL;
    Py_BEGIN_ALLOW_THREADS
    st = tb_min_budget(NULL, &ca.chain, &mb, &cost, &tree);
    Py_END_ALLOW_THREADS
    if (st != TB_OK) {
        tb_raise_status(st, "min_budget");
        goto done;
    }
    PyObject *nodes = tree_to_tuple(&tree);
    if (nodes == NULL)
        goto done;
    result = Py_BuildValue("(LdN)", (long long)mb, cost, nodes);
done:
    tb_plan_tree_free(NULL, &tree);
    chain_args_free(&ca);
    return result;
}

PyDoc_STRVAR(simulate_doc,
"simulate(forward_cost, backward_cost, input_bytes, saved_bytes, nodes, must_keep=None,\n"
"         live_intervals=None)\n"
"    -> (cost, peak_bytes)\n\n"
"Replay a plan tree (preorder (kind, start, end) triples) forward and backward under the\n"
"model: total cost and peak bytes held (the chain input included). ValueError for a\n"
"malformed tree.");

static PyObject *py_simulate(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"forward_cost", "backward_cost", "input_bytes", "saved_bytes",
                             "nodes", "must_keep", "live_intervals", NULL};
    PyObject *f, *b, *x, *g, *nodes, *mk = Py_None, *live = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOO|OO:simulate", kwlist, &f, &b, &x, &g,
                                     &nodes, &mk, &live))
        return NULL;
    chain_args ca;
    if (parse_chain(f, b, x, g, mk, live, &ca) < 0)
        return NULL;
    tb_plan_tree tree;
    PyObject *result = NULL;
    if (tuple_to_tree(nodes, &tree) < 0) {
        chain_args_free(&ca);
        return NULL;
    }
    double cost = 0.0;
    int64_t peak = 0;
    tb_status st = tb_simulate(NULL, &ca.chain, &tree, &cost, &peak);
    if (st == TB_ERR_INVALID)
        PyErr_SetString(PyExc_ValueError,
                        "nodes: not a plan tree of this chain (children must cover each "
                        "region in order, top level 0..L-1, no must_keep stage in a region)");
    else if (st != TB_OK)
        tb_raise_status(st, "simulate");
    else
        result = Py_BuildValue("(dL)", cost, (long long)peak);
    tb_plan_tree_free(NULL, &tree);
    chain_args_free(&ca);
    return result;
}

static PyMethodDef planner_methods[] = {
    {"plan_chain", (PyCFunction)(void (*)(void))py_plan_chain, METH_VARARGS | METH_KEYWORDS,
     plan_chain_doc},
    {"min_budget", (PyCFunction)(void (*)(void))py_min_budget, METH_VARARGS | METH_KEYWORDS,
     min_budget_doc},
    {"simulate", (PyCFunction)(void (*)(void))py_simulate, METH_VARARGS | METH_KEYWORDS,
     simulate_doc},
    {NULL, NULL, 0, NULL},
};

int tb_py_planner_exec(PyObject *module)
{
    if (PyModule_AddFunctions(module, planner_methods) < 0)
        return -1;
    PyObject *names = PyTuple_New(N_PLANNERS);
    if (names == NULL)
        return -1;
    for (int i = 0; i < N_PLANNERS; i++) {
        PyObject *s = PyUnicode_FromString(planner_names[i]);
        if (s == NULL) {
            Py_DECREF(names);
            return -1;
        }
        PyTuple_SET_ITEM(names, i, s);
    }
    int rc = PyModule_AddObjectRef(module, "PLANNERS", names);
    Py_DECREF(names);
    return rc;
}
