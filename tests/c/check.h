/*
 * The check macros shared by the C test programs' files. The counters are
 * defined once, in the file with main().
 */
#ifndef AMBER_TEST_CHECK_H
#define AMBER_TEST_CHECK_H

#include "amber.h"

#include <stdio.h>

extern int checks;
extern int failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        checks++;                                                              \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,   \
                    #cond);                                                    \
            failures++;                                                        \
        }                                                                      \
    } while (0)

/* `expr` must return `want`; on mismatch print both codes and `msg`. */
#define EXPECT(expr, want, msg)                                                \
    do {                                                                       \
        AmberCode got_ = (expr);                                               \
        checks++;                                                              \
        if (got_ != (want)) {                                                  \
            fprintf(stderr, "%s:%d: %s returned %s, want %s (%s)\n", __FILE__, \
                    __LINE__, #expr, amber_code_name(got_),                    \
                    amber_code_name(want), (msg));                             \
            failures++;                                                        \
        }                                                                      \
    } while (0)

#define OBJ_OK(expr) EXPECT(expr, AMBER_OK, amber_object_errmsg(obj))

/* Point-in-time recovery, in capi_pitr.c: runs on its own store in
 * DATA_DIR-pitr. */
void test_pitr(const char *dir);

#endif /* AMBER_TEST_CHECK_H */
