/* Shared declarations of the CPython glue (tiny_backprop._C).
 * Each feature lives in its own csrc/py_*.c file and adds its types/functions to the
 * module in its exec function, called from module.c's single Py_mod_exec slot. */
#ifndef TB_PY_COMMON_H
#define TB_PY_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "planner.h"
#include "tb_common.h"

/* Slots for heap types kept in the module state (traversed and cleared by module.c). */
enum tb_type_slot {
    TB_TYPE_GRAPH = 0,
    TB_TYPE_ACCOUNTANT = 1,
    TB_TYPE_CHAIN = 2,
    TB_TYPE_SPARE_3 = 3,
    TB_N_TYPE_SLOTS = 4
};

typedef struct tb_module_state {
    PyTypeObject *types[TB_N_TYPE_SLOTS];
} tb_module_state;

extern PyModuleDef tb_moduledef;

/* Module state from a module object. */
tb_module_state *tb_get_state(PyObject *module);
/* Module state from a heap type defined by this module (NULL + exception on failure). */
tb_module_state *tb_get_state_from_type(PyTypeObject *type);

/* Raise the Python exception that matches a core status (MemoryError for NOMEM,
 * KeyboardInterrupt for INTERRUPTED unless an exception is already set, ValueError
 * otherwise) with `what` as context. Returns NULL. */
PyObject *tb_raise_status(tb_status status, const char *what);

/* tiny_backprop._C.Chain: an immutable, validated chain (csrc/py_chain.c). Arrays are
 * PyMem-owned; must_keep and live are NULL when absent (n_live == 0). */
typedef struct tb_chain_object {
    PyObject_HEAD
    size_t n;
    double *f, *b;
    int64_t *x, *g;
    uint8_t *mk;
    size_t n_live;
    int64_t *live;
    size_t n_opt;     /* options (stage, bytes, save), grouped by stage */
    int32_t *opt_first;
    int64_t *opt_bytes;
    double *opt_save;
    int64_t *opt_overlap;
    int64_t *w;       /* working bytes per stage, NULL when absent */
    uint8_t *cut;     /* cut_before flags per stage, NULL when absent */
} tb_chain_object;

/* A new Chain of `type` (the module's Chain type) from the fields; must_keep, live,
 * options, working and cut may be NULL or None. NULL + TypeError/ValueError naming field and
 * index. */
PyObject *tb_py_chain_from_fields(PyTypeObject *type, PyObject *f, PyObject *b, PyObject *x,
                                  PyObject *g, PyObject *mk, PyObject *live, PyObject *options,
                                  PyObject *working, PyObject *cut);

/* The core's view of a Chain (arrays borrowed from it), with the transient switch. */
tb_chain tb_py_chain_view(const tb_chain_object *self, int transient);

/* A flag argument: True/False (None = False); TypeError for anything else. 0 or -1. */
int tb_py_parse_flag(PyObject *obj, const char *name, int *out);

/* Feature exec functions: add types/functions to the module; 0 or -1 with an exception. */
int tb_py_graph_exec(PyObject *module);
int tb_py_chain_exec(PyObject *module);
int tb_py_planner_exec(PyObject *module);
int tb_py_accountant_exec(PyObject *module);
int tb_py_knapsack_exec(PyObject *module);

/* Cancellation hook for the core's tb_stop while the GIL is released: re-takes the GIL,
 * checks signals (Ctrl-C), releases it again; nonzero = stop. ctx is a tb_glue_stop
 * holding the thread state from PyEval_SaveThread. */
typedef struct tb_glue_stop {
    PyThreadState *ts;
} tb_glue_stop;
int tb_glue_should_stop(void *ctx);

#endif /* TB_PY_COMMON_H */
