/* Shared declarations of the CPython glue (tiny_backprop._C).
 * Each feature lives in its own csrc/py_*.c file and adds its types/functions to the
 * module in its exec function, called from module.c's single Py_mod_exec slot. */
#ifndef TB_PY_COMMON_H
#define TB_PY_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "tb_common.h"

/* Slots for heap types kept in the module state (traversed and cleared by module.c). */
enum tb_type_slot {
    TB_TYPE_GRAPH = 0,
    TB_TYPE_ACCOUNTANT = 1,
    TB_TYPE_SPARE_2 = 2,
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
 * ValueError otherwise) with `what` as context. Returns NULL. */
PyObject *tb_raise_status(tb_status status, const char *what);

/* Feature exec functions: add types/functions to the module; 0 or -1 with an exception. */
int tb_py_graph_exec(PyObject *module);
int tb_py_planner_exec(PyObject *module);
int tb_py_accountant_exec(PyObject *module);

#endif /* TB_PY_COMMON_H */
