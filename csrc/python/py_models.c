/* Python bindings of the models module (medground._C). */
#include "py_common.h"

int mg_py_register_models(PyObject *module) {
    (void)module;
    return 0;
}
