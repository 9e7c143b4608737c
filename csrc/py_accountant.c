/* Placeholder: the accountant feature adds its types/functions here. */
#include "py_common.h"

int tb_py_accountant_exec(PyObject *module)
{
    (void)module;
    return 0;
}
