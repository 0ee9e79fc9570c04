/* test.h - the tiny test harness: CHECK records a failure with file:line and keeps
 * going; TEST_MAIN_END prints "test_x: N passed, N failed" and exits non-zero on any
 * failure. No test prints FAIL and exits 0. */
#ifndef HERD_TEST_H
#define HERD_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_pass, t_fail;
#define CHECK(cond) do { if (cond) t_pass++; else { t_fail++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECKF(cond, ...) do { if (cond) t_pass++; else { t_fail++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_NEAR(a, b, tol) CHECKF(fabs((double)(a) - (double)(b)) <= (tol), \
    "%s = %.9g, %s = %.9g, tol %.3g", #a, (double)(a), #b, (double)(b), (double)(tol))
#define TEST_MAIN_END(name) do { printf("%s: %d passed, %d failed\n", name, t_pass, t_fail); \
    return t_fail ? 1 : 0; } while (0)
#endif
