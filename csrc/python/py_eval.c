/* Python bindings of the eval module (medground._C). */
#include "py_common.h"

int mg_py_register_eval(PyObject *module) {
    (void)module;
    return 0;
}
