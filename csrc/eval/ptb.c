/* placeholder, replaced below */
#include "eval/eval_internal.h"
mg_status mg_eval_ptb_tokenize(const char *text, char **out) {
    *out = mg_eval_strndup(text, strlen(text));
    return MG_OK;
}
