/* Python bindings of the io module (medground._C). */
#include "py_common.h"

int mg_py_register_io(PyObject *module) {
    (void)module;
    return 0;
}
