/* tiny-backprop C core: status codes and the allocator hook.
 * Pure C11; never includes Python.h. */
#ifndef TB_COMMON_H
#define TB_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum tb_status {
    TB_OK = 0,
    TB_ERR_NOMEM = 1,      /* an allocation failed */
    TB_ERR_INVALID = 2,    /* an argument has a bad value (negative size, NaN cost, ...) */
    TB_ERR_RANGE = 3,      /* an index is out of range */
    TB_ERR_CYCLE = 4,      /* the graph has a cycle */
    TB_ERR_INFEASIBLE = 5, /* no schedule fits in the budget */
    TB_ERR_OVERFLOW = 6,   /* a size or count overflowed */
    TB_ERR_STATE = 7,      /* an object was used in the wrong state */
    TB_ERR_INTERRUPTED = 8, /* a tb_stop callback asked the computation to stop */
    TB_ERR_LIMIT = 9       /* the problem exceeds a documented size bound */
} tb_status;

/* Largest status code (for range checks of codes that come from outside). */
#define TB_STATUS_LAST TB_ERR_LIMIT

/* A static, human-readable description of a status code (never NULL; "unknown status"
 * for a value that is not a tb_status). */
const char *tb_strerror(tb_status status);

/* Cancellation hook of long computations. should_stop(ctx) is polled every few
 * milliseconds of work (from the calling thread); a nonzero return makes the
 * computation free what it holds and return TB_ERR_INTERRUPTED. A NULL hook (or a NULL
 * should_stop) never stops. The core never looks at ctx. */
typedef struct tb_stop {
    int (*should_stop)(void *ctx);
    void *ctx;
} tb_stop;

/* Allocator hook. Every allocation of the core goes through one of these, so tests
 * can count allocations and make the n-th one fail. A NULL hook means malloc/free. */
typedef struct tb_allocator {
    void *(*alloc)(void *ctx, size_t size);
    void (*release)(void *ctx, void *ptr);
    void *ctx;
} tb_allocator;

/* size bytes, or NULL. size 0 is treated as 1. */
void *tb_malloc(const tb_allocator *a, size_t size);
/* n * size bytes, zero-filled, or NULL (also on overflow of n * size). */
void *tb_calloc(const tb_allocator *a, size_t n, size_t size);
void tb_free(const tb_allocator *a, void *ptr);

/* A counting allocator for tests: counts live blocks and fails the fail_at-th
 * allocation (1-based; 0 = never fail). */
typedef struct tb_counting_state {
    size_t n_alloc;  /* allocations attempted */
    size_t n_free;   /* blocks released */
    size_t live;     /* blocks currently live */
    size_t fail_at;  /* 1-based index of the allocation to fail; 0 = none */
} tb_counting_state;

tb_allocator tb_counting_allocator(tb_counting_state *state);

#endif /* TB_COMMON_H */
