#include "tb_common.h"

#include <stdlib.h>
#include <string.h>

const char *tb_strerror(tb_status status)
{
    switch (status) {
    case TB_OK: return "success";
    case TB_ERR_NOMEM: return "out of memory";
    case TB_ERR_INVALID: return "invalid argument value";
    case TB_ERR_RANGE: return "index out of range";
    case TB_ERR_CYCLE: return "graph has a cycle";
    case TB_ERR_INFEASIBLE: return "no schedule fits in the memory budget";
    case TB_ERR_OVERFLOW: return "size overflow";
    case TB_ERR_STATE: return "object used in the wrong state";
    case TB_ERR_INTERRUPTED: return "interrupted";
    case TB_ERR_LIMIT: return "problem too large (over a documented size bound)";
    }
    return "unknown status";
}

void *tb_malloc(const tb_allocator *a, size_t size)
{
    if (size == 0)
        size = 1;
    if (a == NULL || a->alloc == NULL)
        return malloc(size);
    return a->alloc(a->ctx, size);
}

void *tb_calloc(const tb_allocator *a, size_t n, size_t size)
{
    if (n != 0 && size > SIZE_MAX / n)
        return NULL;
    size_t total = n * size;
    void *p = tb_malloc(a, total);
    if (p != NULL)
        memset(p, 0, total == 0 ? 1 : total);
    return p;
}

void tb_free(const tb_allocator *a, void *ptr)
{
    if (ptr == NULL)
        return;
    if (a == NULL || a->release == NULL) {
        free(ptr);
        return;
    }
    a->release(a->ctx, ptr);
}

static void *counting_alloc(void *ctx, size_t size)
{
    tb_counting_state *st = ctx;
    st->n_alloc++;
    if (st->fail_at != 0 && st->n_alloc == st->fail_at)
        return NULL;
    void *p = malloc(size);
    if (p != NULL)
        st->live++;
    return p;
}

static void counting_release(void *ctx, void *ptr)
{
    tb_counting_state *st = ctx;
    st->n_free++;
    st->live--;
    free(ptr);
}

tb_allocator tb_counting_allocator(tb_counting_state *state)
{
    tb_allocator a;
    a.alloc = counting_alloc;
    a.release = counting_release;
    a.ctx = state;
    return a;
}
