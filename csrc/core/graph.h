/* tiny-backprop C core: the computation graph (CSR), its liveness analysis and its
 * coarsening into a chain of stages. Pure C11; never includes Python.h.
 *
 * MEMORY MODEL (mirrored exactly by tiny_backprop/_reference.py)
 *
 * Nodes are 0..n-1. The analysis runs over a topological order `order` (pos[v] is
 * v's position in it): the given index order if every input id is smaller than its
 * consumer's id, otherwise Kahn's algorithm taking the smallest ready index first.
 *
 * Storage. A node flagged TB_FLAG_ALIAS that has at least one input owns no memory: it
 * is a view of its first input's storage. owner(v) follows first inputs through alias
 * chains to the root node that owns the storage (owner(v) = v for a non-alias node, and
 * for an ALIAS node without inputs). bytes(r) of a root r is output_bytes[r], or 0 if r
 * is flagged TB_FLAG_PARAM (parameters, buffers, constants are not activation memory).
 * The output_bytes of alias nodes are ignored.
 *
 * Liveness. A storage root r is produced at pos[r]. last[r] = the largest position of
 * any consumer of any node whose owner is r (pos[r] if there is none); if any node
 * whose owner is r is flagged TB_FLAG_OUTPUT, last[r] = n (it lives to the end).
 * r is "live after p" iff pos[r] <= p < last[r].
 *   frontier[p] = sum of bytes(r) over roots live after p.
 *
 * Store-all peak of one forward + backward keeping everything backward needs:
 * a root r is "saved" iff some node whose owner is r is flagged TB_FLAG_OUTPUT_SAVED;
 *   held[p] = frontier[p]
 *           + sum of bytes(r) over saved roots with pos[r] <= p that are not live after p
 *           + sum of saved_bytes[v] over nodes with pos[v] <= p
 *   store_all_peak = max over p of held[p] (0 for an empty graph). Each root counts once.
 *
 * Lower bound (see tb_graph_lower_bound for why it is one): max of
 *   (a) for every node v: saved_bytes[v] + bytes of the distinct roots in
 *       { owner(u) : u flagged OUTPUT } U { owner(u) : u input of v, u OUTPUT_SAVED }
 *       U { owner(v) if v is OUTPUT_SAVED }
 *   (b) for every root r with last[r] > pos[r]: bytes(r).
 * It never exceeds the store-all peak (all terms of (a) are held at p = n-1, (b) is
 * part of frontier[pos[r]]).
 */
#ifndef TB_GRAPH_H
#define TB_GRAPH_H

#include <stdint.h>

#include "tb_common.h"

/* Node flags: the same bits as tiny_backprop/ir.py. */
#define TB_FLAG_RANDOM 1u
#define TB_FLAG_INPLACE 2u
#define TB_FLAG_NEVER_RECOMPUTE 4u
#define TB_FLAG_PARAM 8u
#define TB_FLAG_INPUT 16u
#define TB_FLAG_OUTPUT 32u
#define TB_FLAG_ALIAS 64u
#define TB_FLAG_OUTPUT_SAVED 128u
#define TB_FLAG_ALL 255u

/* A graph and its analysis; every array is owned and has n (or n_edges) entries
 * unless noted. Read-only after tb_graph_create. */
typedef struct tb_graph {
    tb_allocator alloc;     /* copy of the allocator used for every block */
    int64_t n;              /* number of nodes */
    int64_t n_edges;        /* total number of input edges */
    int64_t *output_bytes;  /* bytes of the node's outputs */
    int64_t *saved_bytes;   /* bytes autograd saves that are not graph values */
    double *cost;           /* forward cost (FLOPs or proxy) */
    uint32_t *flags;        /* TB_FLAG_* */
    int64_t *in_offsets;    /* n + 1 entries: inputs of v are in_indices[in_offsets[v] .. in_offsets[v+1]) */
    int64_t *in_indices;    /* n_edges entries */
    /* analysis */
    int64_t *order;         /* topological order: order[p] = node */
    int64_t *pos;           /* pos[v] = position of node v in order */
    int64_t *owner;         /* storage root of every node */
    int64_t *last;          /* for roots: last position they are live at (n = to the end); -1 for non-roots */
    int64_t *frontier;      /* frontier[p] bytes live after position p */
    unsigned char *saved;   /* 1 for roots whose storage is kept for backward (OUTPUT_SAVED) */
    int64_t store_all_peak; /* bytes */
    int64_t lower_bound;    /* bytes */
} tb_graph;

/* One stage of a chain: positions [start, end) of the topological order. */
typedef struct tb_stage {
    int64_t start;
    int64_t end;
    double forward_cost;   /* sum of the costs of its nodes */
    double backward_cost;  /* 2 x forward_cost */
    int64_t input_bytes;   /* x_i: bytes produced before start and live at/after start */
    int64_t saved_bytes;   /* g_i: what its backward needs beyond the boundaries */
    int never_recompute;   /* 1 if a node of the stage is flagged NEVER_RECOMPUTE */
} tb_stage;

/* Validate, copy and analyse a graph. `a` may be NULL (malloc/free); it is copied.
 * in_offsets has n + 1 entries (in_offsets[0] = 0, non-decreasing), in_indices has
 * in_offsets[n] entries. Errors: TB_ERR_INVALID (n < 0, bad offsets, negative size,
 * NaN/infinite/negative cost, unknown flag bits, NULL array), TB_ERR_RANGE (input id out
 * of range or a self-loop), TB_ERR_CYCLE, TB_ERR_OVERFLOW (byte totals above INT64_MAX),
 * TB_ERR_NOMEM. On error *out is NULL and nothing is leaked. */
tb_status tb_graph_create(const tb_allocator *a, int64_t n, const int64_t *output_bytes,
                          const int64_t *saved_bytes, const double *cost,
                          const uint32_t *flags, const int64_t *in_offsets,
                          const int64_t *in_indices, tb_graph **out);

void tb_graph_destroy(tb_graph *g);

/* Bytes a root owns (0 for PARAM roots and non-roots). */
int64_t tb_graph_root_bytes(const tb_graph *g, int64_t v);

/* Coarsen into at most max_stages (>= 1) stages. *stages_out is allocated with the
 * graph's allocator (free with tb_graph_free_stages); *n_out = number of stages
 * (0 for an empty graph).
 *
 * Heuristic. Trivial positions (nodes flagged PARAM, or flagged INPUT with no inputs)
 * never start a stage: they join the stage before them (stage 0 if leading). The other
 * K positions are non-trivial; candidate cuts are the non-trivial positions after the
 * first one. If max_stages >= K, every candidate is a cut (one stage per non-trivial
 * node). Otherwise L = max_stages stages: weights w_p = cost of the node at p (or 1 per
 * non-trivial position if all costs are 0), total W = sum w_p, P(c) = sum of w_p for
 * p < c. For the j-th cut (j = 1..L-1), target T = j * W / L and half-width h = W / (2L):
 * among the candidates still allowed (after the previous cut, leaving enough for the
 * remaining cuts) whose P(c) is in [T - h, T + h], take the smallest frontier[c - 1],
 * then the smallest |P(c) - T|, then the smallest c; if none is in the window, take the
 * allowed candidate nearest (by P, then smallest c) to T. Cost: O(n log n). */
tb_status tb_graph_coarsen(const tb_graph *g, int64_t max_stages, tb_stage **stages_out,
                           int64_t *n_out);

void tb_graph_free_stages(const tb_graph *g, tb_stage *stages);

/* Live intervals of a coarsening (the planner's DAG accounting, see planner.h): for
 * every storage root r with bytes(r) > 0, not a graph input (roots flagged INPUT are
 * part of x_0 and held throughout), live after its position (last[r] > pos[r]): with
 * j = the stage holding pos[r] and u = the stage holding min(last[r], n - 1), an
 * interval (j, u, bytes(r)) if j < u. Intervals with the same (j, u) are merged; the
 * output is sorted by j, then u. So x_i = (graph-input bytes live at stage i's start)
 * + sum of bytes over intervals with j < i <= u. *out (3 * *count int64: j, u, bytes;
 * NULL when *count == 0) is allocated with the graph's allocator: free with
 * tb_graph_free_intervals. `stages` must be a coarsening of g (L >= 1 stages covering
 * 0..n-1 in order); TB_ERR_INVALID otherwise. */
tb_status tb_graph_live_intervals(const tb_graph *g, const tb_stage *stages, int64_t L,
                                  int64_t **out, int64_t *count);

void tb_graph_free_intervals(const tb_graph *g, int64_t *intervals);

#endif /* TB_GRAPH_H */
