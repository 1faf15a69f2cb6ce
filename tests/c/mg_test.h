/* Minimal assertion helpers for the C unit tests (one program per file). */
#ifndef MG_TEST_H
#define MG_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "medground.h"

static int mg_test_failures;
static int mg_test_checks;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        mg_test_checks++;                                                                \
        if (!(cond)) {                                                                   \
            mg_test_failures++;                                                          \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, \
                    #cond, mg_last_error());                                             \
        }                                                                                \
    } while (0)

#define CHECK_STATUS(expr, expected) CHECK((expr) == (expected))
#define CHECK_OK(expr) CHECK_STATUS(expr, MG_OK)
#define CHECK_MESSAGE(fragment) CHECK(strstr(mg_last_error(), fragment) != NULL)

static inline int mg_test_finish(const char *name) {
    printf("%s: %d checks, %d failures\n", name, mg_test_checks, mg_test_failures);
    return mg_test_failures ? 1 : 0;
}

#endif
