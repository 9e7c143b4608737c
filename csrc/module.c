/* tiny_backprop._C: module definition, multi-phase init and module state.
 * Features live in csrc/py_*.c; see py_common.h. */
#include "py_common.h"

tb_module_state *tb_get_state(PyObject *module)
{
    return (tb_module_state *)PyModule_GetState(module);
}

tb_module_state *tb_get_state_from_type(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &tb_moduledef);
    if (module == NULL)
        return NULL;
    return tb_get_state(module);
}

PyObject *tb_raise_status(tb_status status, const char *what)
{
    if (status == TB_ERR_NOMEM)
        return PyErr_NoMemory();
    if (status == TB_ERR_INTERRUPTED) {
        /* the stop hook stopped on a signal handler's exception: keep that one */
        if (!PyErr_Occurred())
            PyErr_SetNone(PyExc_KeyboardInterrupt);
        return NULL;
    }
    PyErr_Format(PyExc_ValueError, "%s: %s", what, tb_strerror(status));
    return NULL;
}

static PyObject *tb_py_strerror(PyObject *Py_UNUSED(module), PyObject *arg)
{
    if (PyBool_Check(arg) || !PyLong_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "strerror() code must be an int, not %.100s",
                     Py_TYPE(arg)->tp_name);
        return NULL;
    }
    int overflow = 0;
    long long code = PyLong_AsLongLongAndOverflow(arg, &overflow);
    if (code == -1 && PyErr_Occurred())
        return NULL;
    /* range-check before the cast: (tb_status)code would truncate 2**32 + 2 to 2 */
    if (overflow != 0 || code < 0 || code > TB_STATUS_LAST)
        return PyUnicode_FromString("unknown status");
    return PyUnicode_FromString(tb_strerror((tb_status)code));
}

static PyMethodDef tb_module_methods[] = {
    {"strerror", tb_py_strerror, METH_O,
     "strerror(code: int) -> str\n\nDescription of a C core status code."},
    {NULL, NULL, 0, NULL},
};

static int tb_module_exec(PyObject *module)
{
    if (tb_py_graph_exec(module) < 0)
        return -1;
    if (tb_py_chain_exec(module) < 0)
        return -1;
    if (tb_py_planner_exec(module) < 0)
        return -1;
    if (tb_py_knapsack_exec(module) < 0)
        return -1;
    if (tb_py_accountant_exec(module) < 0)
        return -1;
    return 0;
}

static int tb_module_traverse(PyObject *module, visitproc visit, void *arg)
{
    tb_module_state *st = tb_get_state(module);
    for (int i = 0; i < TB_N_TYPE_SLOTS; i++)
        Py_VISIT(st->types[i]);
    return 0;
}

static int tb_module_clear(PyObject *module)
{
    tb_module_state *st = tb_get_state(module);
    for (int i = 0; i < TB_N_TYPE_SLOTS; i++)
        Py_CLEAR(st->types[i]);
    return 0;
}

static void tb_module_free(void *module)
{
    (void)tb_module_clear((PyObject *)module);
}

static PyModuleDef_Slot tb_module_slots[] = {
    {Py_mod_exec, tb_module_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    {0, NULL},
};

PyModuleDef tb_moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tiny_backprop._C",
    .m_doc = "tiny-backprop's C core: graph analysis, planners, simulator, memory accountant.",
    .m_size = sizeof(tb_module_state),
    .m_methods = tb_module_methods,
    .m_slots = tb_module_slots,
    .m_traverse = tb_module_traverse,
    .m_clear = tb_module_clear,
    .m_free = tb_module_free,
};

PyMODINIT_FUNC PyInit__C(void)
{
    return PyModuleDef_Init(&tb_moduledef);
}
