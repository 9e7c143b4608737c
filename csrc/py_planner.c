/* CPython glue of the planner: plan_chain, min_budget, simulate, PLANNERS.
 * Only numbers cross the boundary: costs as floats, sizes as ints (bytes). Plan trees
 * travel as tuples of (kind, start, end) in preorder (kind 0 = Keep, 1 = Region), or
 * (kind, start, end, option) for a region that keeps one of its stage's options. */
#include "py_common.h"

#include <math.h>
#include <string.h>

static const char *const planner_names[] = {"optimal", "store_all", "per_stage", "sqrt",
                                            "tree"};
#define N_PLANNERS 5

/* The chain argument of an entry point: a Chain (borrowed) or one built from the legacy
 * positional lists (owned). */
typedef struct chain_arg {
    tb_chain_object *obj;
    int owned;
} chain_arg;

static void chain_arg_release(chain_arg *ca)
{
    if (ca->owned)
        Py_XDECREF((PyObject *)ca->obj);
    ca->obj = NULL;
    ca->owned = 0;
}

static PyTypeObject *chain_type(PyObject *module)
{
    return tb_get_state(module)->types[TB_TYPE_CHAIN];
}

/* Is this call the Chain form (a Chain first, or chain= and no positionals)? */
static int is_chain_call(PyObject *module, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) > 0)
        return Py_IS_TYPE(PyTuple_GET_ITEM(args, 0), chain_type(module));
    if (kwds == NULL)
        return 0;
    PyObject *c = PyDict_GetItemString(kwds, "chain"); /* borrowed; no exception */
    return c != NULL;
}

/* Legacy form: build the Chain from the fields (the one parser, py_chain.c). */
static int chain_from_fields(PyObject *module, PyObject *f, PyObject *b, PyObject *x,
                             PyObject *g, PyObject *mk, PyObject *live, chain_arg *ca)
{
    PyObject *c = tb_py_chain_from_fields(chain_type(module), f, b, x, g, mk, live, NULL,
                                           NULL, NULL);
    if (c == NULL)
        return -1;
    ca->obj = (tb_chain_object *)c;
    ca->owned = 1;
    return 0;
}

/* Chain form: the argument must be exactly a Chain. */
static int chain_borrow(PyObject *module, PyObject *c, chain_arg *ca)
{
    if (!Py_IS_TYPE(c, chain_type(module))) {
        PyErr_Format(PyExc_TypeError, "chain must be a tiny_backprop._C.Chain, not %.100s",
                     Py_TYPE(c)->tp_name);
        return -1;
    }
    ca->obj = (tb_chain_object *)c;
    ca->owned = 0;
    return 0;
}

/* The stop hook of the core, run with the GIL released: every poll takes the GIL back
 * for PyErr_CheckSignals (Ctrl-C raises KeyboardInterrupt there, in the main thread)
 * and releases it again. */
int tb_glue_should_stop(void *ctx)
{
    tb_glue_stop *gs = ctx;
    PyEval_RestoreThread(gs->ts);
    int stop = PyErr_CheckSignals() < 0;
    gs->ts = PyEval_SaveThread();
    return stop;
}

static PyObject *tree_to_tuple(const tb_plan_tree *tree)
{
    PyObject *out = PyTuple_New((Py_ssize_t)tree->n_nodes);
    if (out == NULL)
        return NULL;
    for (size_t j = 0; j < tree->n_nodes; j++) {
        int opt = tree->opt != NULL ? (int)tree->opt[j] : -1;
        PyObject *item =
            opt < 0 ? Py_BuildValue("(iii)", (int)tree->kind[j], (int)tree->start[j],
                                    (int)tree->end[j])
                    : Py_BuildValue("(iiii)", (int)tree->kind[j], (int)tree->start[j],
                                    (int)tree->end[j], opt);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, (Py_ssize_t)j, item); /* steals */
    }
    return out;
}

/* A sequence of (kind, start, end) triples into a tree (freed with the core's NULL
 * allocator, malloc/free). The sequence is copied into a tuple first: an item's
 * __index__ may mutate the caller's list, never our copy. */
static int tuple_to_tree(PyObject *nodes, size_t n_stages, tb_plan_tree *tree)
{
    memset(tree, 0, sizeof(*tree));
    if (!PySequence_Check(nodes) || PyUnicode_Check(nodes) || PyBytes_Check(nodes)) {
        PyErr_Format(PyExc_TypeError, "nodes must be a sequence of (kind, start, end), not %.100s",
                     Py_TYPE(nodes)->tp_name);
        return -1;
    }
    PyObject *t = PySequence_Tuple(nodes);
    if (t == NULL)
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(t);
    if (n == 0 || (size_t)n > 4 * n_stages + 4) {
        PyErr_Format(PyExc_ValueError, "nodes: a plan tree of %zu stages needs 1..%zu nodes, "
                     "got %zd", n_stages, 4 * n_stages + 4, n);
        goto error;
    }
    size_t cap = (size_t)n;
    tree->kind = tb_malloc(NULL, cap);
    tree->start = tb_malloc(NULL, cap * sizeof(int32_t));
    tree->end = tb_malloc(NULL, cap * sizeof(int32_t));
    tree->opt = tb_malloc(NULL, cap * sizeof(int32_t));
    if (tree->kind == NULL || tree->start == NULL || tree->end == NULL || tree->opt == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    tree->cap = cap;
    for (Py_ssize_t j = 0; j < n; j++) {
        int k, s, e, o = -1;
        PyObject *item = PyTuple_GET_ITEM(t, j); /* borrowed from our tuple */
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 3 || PyTuple_GET_SIZE(item) > 4) {
            PyErr_Format(PyExc_TypeError, "nodes[%zd] must be a (kind, start, end) or "
                         "(kind, start, end, option) tuple, not %.100s", j,
                         Py_TYPE(item)->tp_name);
            goto error;
        }
        if (!PyArg_ParseTuple(item, "iii|i", &k, &s, &e, &o)) {
            int range = PyErr_ExceptionMatches(PyExc_OverflowError);
            PyErr_Clear();
            PyErr_Format(range ? PyExc_ValueError : PyExc_TypeError,
                         range ? "nodes[%zd]: kind, start and end must fit in an int, got %R"
                               : "nodes[%zd] must be a (kind, start, end) tuple of ints, got %R",
                         j, item);
            goto error;
        }
        if (k != TB_NODE_KEEP && k != TB_NODE_REGION) {
            PyErr_Format(PyExc_ValueError, "nodes[%zd]: kind must be 0 (Keep) or 1 (Region)", j);
            goto error;
        }
        if (PyTuple_GET_SIZE(item) == 4 && (o < 0 || k != TB_NODE_REGION)) {
            PyErr_Format(PyExc_ValueError, "nodes[%zd]: an option (the 4th entry) must be "
                         ">= 0 and belongs to a Region (kind 1), got %R", j, item);
            goto error;
        }
        tree->kind[j] = (uint8_t)k;
        tree->start[j] = s;
        tree->end[j] = e;
        tree->opt[j] = o;
    }
    tree->n_nodes = cap;
    Py_DECREF(t);
    return 0;
error:
    tb_plan_tree_free(NULL, tree);
    Py_DECREF(t);
    return -1;
}

static int planner_from_name(const char *name)
{
    for (int i = 0; i < N_PLANNERS; i++)
        if (strcmp(name, planner_names[i]) == 0)
            return i;
    return -1;
}

/* Raise for a core status of plan/min_budget/simulate (the stop hook's exception, a
 * limit message, or the generic mapping). Returns NULL. */
static PyObject *raise_plan_status(tb_status st, const char *what)
{
    if (st == TB_ERR_LIMIT) {
        PyErr_Format(PyExc_ValueError,
                     "%s: the planner's tables would exceed %llu bytes (TB_MAX_PLAN_BYTES, "
                     "4 GiB): use fewer stages (max_stages) or fewer slots", what,
                     (unsigned long long)TB_MAX_PLAN_BYTES);
        return NULL;
    }
    return tb_raise_status(st, what);
}

PyDoc_STRVAR(plan_chain_doc,
"plan_chain(chain, budget, planner='optimal', slots=512, height=-1, transient=False)\n"
"plan_chain(forward_cost, backward_cost, input_bytes, saved_bytes, budget, planner='optimal',\n"
"           slots=512, must_keep=None, height=-1, live_intervals=None, transient=False)\n"
"    -> (nodes, planned_cost, cost, peak) | None\n\n"
"Plan a chain (a Chain, or its fields). nodes: preorder (kind, start, end) triples (kind\n"
"0 = Keep, 1 = Region). planned_cost: the DP's value (optimal) or the simulated cost\n"
"(baselines); cost, peak: the simulator's total cost and peak bytes. None when 'optimal'\n"
"finds no schedule in budget (memory discretised into slots). height < 0 = ceil(log2 L)\n"
"for 'tree'. live_intervals: (producer, last_user, bytes) per value crossing a boundary\n"
"(DAG accounting: a boundary is charged only for what is new since the held one).\n"
"transient (a bool): also count a region's running boundaries (docs/theory.md).\n"
"Interruptible (Ctrl-C raises KeyboardInterrupt); ValueError when the DP tables would\n"
"exceed TB_MAX_PLAN_BYTES (4 GiB).");

static PyObject *py_plan_chain(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"forward_cost", "backward_cost", "input_bytes", "saved_bytes",
                             "budget", "planner", "slots", "must_keep", "height",
                             "live_intervals", "transient", NULL};
    static char *kwlist_chain[] = {"chain", "budget", "planner", "slots", "height",
                                   "transient", NULL};
    PyObject *c = NULL, *f, *b, *x, *g, *mk = Py_None, *live = Py_None, *tr_obj = Py_False;
    long long budget;
    const char *planner = "optimal";
    Py_ssize_t slots = 512;
    int height = -1, transient = 0;
    chain_arg ca = {NULL, 0};
    if (is_chain_call(module, args, kwds)) {
        if (!PyArg_ParseTupleAndKeywords(args, kwds, "OL|sniO:plan_chain", kwlist_chain, &c,
                                         &budget, &planner, &slots, &height, &tr_obj))
            return NULL;
    } else if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOL|snOiOO:plan_chain", kwlist, &f,
                                            &b, &x, &g, &budget, &planner, &slots, &mk, &height,
                                            &live, &tr_obj)) {
        return NULL;
    }
    if (tb_py_parse_flag(tr_obj, "transient", &transient) < 0)
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
    if (c != NULL ? chain_borrow(module, c, &ca) < 0
                  : chain_from_fields(module, f, b, x, g, mk, live, &ca) < 0)
        return NULL;
    tb_chain chain = tb_py_chain_view(ca.obj, transient);
    size_t n = chain.n;
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
    tb_glue_stop gs;
    tb_stop stop = {tb_glue_should_stop, &gs};
    gs.ts = PyEval_SaveThread();
    if (kind == TB_PLANNER_OPTIMAL)
        st = tb_plan_optimal_ex(NULL, &stop, &chain, (int64_t)budget, (int64_t)slots, &planned,
                                &tree);
    else
        st = tb_plan_baseline(NULL, &chain, (tb_planner_kind)kind, height, &tree);
    if (st == TB_OK)
        st = tb_simulate_ex(NULL, &stop, &chain, &tree, &cost, &peak);
    PyEval_RestoreThread(gs.ts);
    if (st == TB_ERR_INFEASIBLE) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (st != TB_OK) {
        raise_plan_status(st, "plan_chain");
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
    chain_arg_release(&ca);
    return result;
}

PyDoc_STRVAR(min_budget_doc,
"min_budget(chain, transient=False)\n"
"min_budget(forward_cost, backward_cost, input_bytes, saved_bytes, must_keep=None,\n"
"           live_intervals=None, transient=False)\n"
"    -> (min_bytes, cost, nodes)\n\n"
"Smallest budget (exact bytes) for which the model has a schedule, the cost of the\n"
"schedule found for it, and that schedule as preorder (kind, start, end) triples.\n"
"Interruptible (Ctrl-C raises KeyboardInterrupt).");

static PyObject *py_min_budget(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"forward_cost", "backward_cost", "input_bytes", "saved_bytes",
                             "must_keep", "live_intervals", "transient", NULL};
    static char *kwlist_chain[] = {"chain", "transient", NULL};
    PyObject *c = NULL, *f, *b, *x, *g, *mk = Py_None, *live = Py_None, *tr_obj = Py_False;
    int transient = 0;
    chain_arg ca = {NULL, 0};
    if (is_chain_call(module, args, kwds)) {
        if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:min_budget", kwlist_chain, &c,
                                         &tr_obj))
            return NULL;
    } else if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|OOO:min_budget", kwlist, &f, &b,
                                            &x, &g, &mk, &live, &tr_obj)) {
        return NULL;
    }
    if (tb_py_parse_flag(tr_obj, "transient", &transient) < 0)
        return NULL;
    if (c != NULL ? chain_borrow(module, c, &ca) < 0
                  : chain_from_fields(module, f, b, x, g, mk, live, &ca) < 0)
        return NULL;
    tb_chain chain = tb_py_chain_view(ca.obj, transient);
    tb_plan_tree tree = {0};
    int64_t mb = 0;
    double cost = 0.0;
    tb_status st;
    PyObject *result = NULL;
    tb_glue_stop gs;
    tb_stop stop = {tb_glue_should_stop, &gs};
    gs.ts = PyEval_SaveThread();
    st = tb_min_budget_ex(NULL, &stop, &chain, &mb, &cost, &tree);
    PyEval_RestoreThread(gs.ts);
    if (st != TB_OK) {
        raise_plan_status(st, "min_budget");
        goto done;
    }
    PyObject *nodes = tree_to_tuple(&tree);
    if (nodes == NULL)
        goto done;
    result = Py_BuildValue("(LdN)", (long long)mb, cost, nodes);
done:
    tb_plan_tree_free(NULL, &tree);
    chain_arg_release(&ca);
    return result;
}

PyDoc_STRVAR(simulate_doc,
"simulate(chain, nodes, transient=False)\n"
"simulate(forward_cost, backward_cost, input_bytes, saved_bytes, nodes, must_keep=None,\n"
"         live_intervals=None, transient=False)\n"
"    -> (cost, peak_bytes)\n\n"
"Replay a plan tree (preorder (kind, start, end) triples) forward and backward under the\n"
"model: total cost and peak bytes held (the chain input included). ValueError for a\n"
"malformed tree.");

static PyObject *py_simulate(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"forward_cost", "backward_cost", "input_bytes", "saved_bytes",
                             "nodes", "must_keep", "live_intervals", "transient", NULL};
    static char *kwlist_chain[] = {"chain", "nodes", "transient", NULL};
    PyObject *c = NULL, *f, *b, *x, *g, *nodes, *mk = Py_None, *live = Py_None,
             *tr_obj = Py_False;
    int transient = 0;
    chain_arg ca = {NULL, 0};
    if (is_chain_call(module, args, kwds)) {
        if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:simulate", kwlist_chain, &c, &nodes,
                                         &tr_obj))
            return NULL;
    } else if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOO|OOO:simulate", kwlist, &f, &b,
                                            &x, &g, &nodes, &mk, &live, &tr_obj)) {
        return NULL;
    }
    if (tb_py_parse_flag(tr_obj, "transient", &transient) < 0)
        return NULL;
    if (c != NULL ? chain_borrow(module, c, &ca) < 0
                  : chain_from_fields(module, f, b, x, g, mk, live, &ca) < 0)
        return NULL;
    tb_chain chain = tb_py_chain_view(ca.obj, transient);
    tb_plan_tree tree;
    PyObject *result = NULL;
    if (tuple_to_tree(nodes, chain.n, &tree) < 0) {
        chain_arg_release(&ca);
        return NULL;
    }
    double cost = 0.0;
    int64_t peak = 0;
    tb_glue_stop gs;
    tb_stop stop = {tb_glue_should_stop, &gs};
    gs.ts = PyEval_SaveThread();
    tb_status st = tb_simulate_ex(NULL, &stop, &chain, &tree, &cost, &peak);
    PyEval_RestoreThread(gs.ts);
    if (st == TB_ERR_INVALID)
        PyErr_SetString(PyExc_ValueError,
                        "nodes: not a plan tree of this chain (children must cover each "
                        "region in order, top level 0..L-1, no must_keep stage in a region)");
    else if (st != TB_OK)
        raise_plan_status(st, "simulate");
    else
        result = Py_BuildValue("(dL)", cost, (long long)peak);
    tb_plan_tree_free(NULL, &tree);
    chain_arg_release(&ca);
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
