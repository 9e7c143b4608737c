/* C unit tests of tb_common: status strings and the counting allocator. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_common.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); failures++; } } while (0)

int main(void)
{
    for (int s = TB_OK; s <= TB_ERR_STATE; s++)
        CHECK(strcmp(tb_strerror((tb_status)s), "unknown status") != 0);
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
