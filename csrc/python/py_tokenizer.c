/* Python bindings of the tokenizer module (medground._C). */
#include "py_common.h"

int mg_py_register_tokenizer(PyObject *module) {
    (void)module;
    return 0;
}
