/* Python bindings of the data module (medground._C). */
#include "py_common.h"

int mg_py_register_data(PyObject *module) {
    (void)module;
    return 0;
}
