/* Placeholder: the graph feature adds its types/functions here. */
#include "py_common.h"

int tb_py_graph_exec(PyObject *module)
{
    (void)module;
    return 0;
}
