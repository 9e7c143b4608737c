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
    TB_ERR_STATE = 7       /* an object was used in the wrong state */
} tb_status;

/* A static, human-readable description of a status code (never NULL). */
const char *tb_strerror(tb_status status);

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
