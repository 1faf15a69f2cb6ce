/* Python bindings of the image module (medground._C). */
#include "py_common.h"

int mg_py_register_image(PyObject *module) {
    (void)module;
    return 0;
}
