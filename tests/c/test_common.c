/* C unit tests of tb_common: status strings and the counting allocator. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_common.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

int main(void)
{
    /* every status has its own full message */
    static const char *const expected[] = {
        "success",
        "out of memory",
        "invalid argument value",
        "index out of range",
        "graph has a cycle",
        "no schedule fits in the memory budget",
        "size overflow",
        "object used in the wrong state",
        "interrupted",
        "problem too large (over a documented size bound)",
    };
    CHECK(sizeof(expected) / sizeof(expected[0]) == (size_t)TB_STATUS_LAST + 1);
    for (int s = TB_OK; s <= TB_STATUS_LAST; s++) {
        CHECK(strcmp(tb_strerror((tb_status)s), expected[s]) == 0);
        for (int t = TB_OK; t < s; t++)
            CHECK(strcmp(tb_strerror((tb_status)s), tb_strerror((tb_status)t)) != 0);
    }
    CHECK(strcmp(tb_strerror((tb_status)(TB_STATUS_LAST + 1)), "unknown status") == 0);
    CHECK(strcmp(tb_strerror((tb_status)999), "unknown status") == 0);

    tb_counting_state st = {0, 0, 0, 2};
    tb_allocator a = tb_counting_allocator(&st);
    void *p1 = tb_malloc(&a, 16);
    void *p2 = tb_malloc(&a, 16);
    CHECK(p1 != NULL);
    CHECK(p2 == NULL);
    CHECK(st.live == 1);
    tb_free(&a, p1);
    CHECK(st.live == 0);
    CHECK(tb_calloc(&a, SIZE_MAX / 2, 4) == NULL);
    int *z = tb_calloc(NULL, 4, sizeof(int));
    CHECK(z != NULL && z[0] == 0 && z[3] == 0);
    tb_free(NULL, z);

    printf("test_common: %s\n", failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
}
