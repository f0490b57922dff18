/* Prometheus metrics: lock-free counters updated per request, rendered as text on /metrics. */
#ifndef EMBD_METRICS_H
#define EMBD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "acct.h"
#include "compute.h"
#include "gen.h"
#include "routes.h"
#include "turns.h"

enum reject_reason {
	REJ_REQUEST_BYTES,
	REJ_INFLIGHT_BYTES,
	REJ_MAX_IDS,
	REJ_MAX_BODY_BYTES,
	REJ_REQUEST_TIMEOUT,
	REJ_CONNECTIONS,
	REJ_WORK,
	REJ_COMPUTE_QUEUE,
	REJ_MIN_SEND_RATE,      /* a response's client took it more slowly than limits.min_send_rate: closed */
	REJ_GENERATIONS,        /* a reload past limits.generations closed the connections pinning the oldest one */
	REJ_CONNECTIONS_PER_IP, /* a connection from an address holding limits.connections_per_ip already */
	REJ_COUNT
};

#define METRICS_STATUSES 13
#define METRICS_BUCKETS  16

typedef struct embd_metrics {
	atomic_ullong requests[R_COUNT][METRICS_STATUSES];
	atomic_ullong duration_buckets[METRICS_BUCKETS]; /* cumulative on output only */
	atomic_ullong duration_count;
	atomic_ullong duration_sum_ns;
	atomic_ullong zerocopy_bytes;
	atomic_ullong copied_bytes;
	atomic_ullong rejected[REJ_COUNT];
	atomic_ullong reloads[2];       /* ok, failed */
	embd_gen_list generations_live; /* the generations alive (lib/gen.h): the gauge and what each holds */
	atomic_long connections;        /* open connections */
	atomic_ullong generation;
	/* SIGUSR1s that could not reopen log.file (the log goes on into the old file) */
	atomic_ullong log_reopen_failures;
} embd_metrics;

void embd_metrics_init(embd_metrics *m);

/* At most this many live generations are shown (limits.generations is at most this too). */
#define METRICS_GENERATIONS 16

/* A live generation as /metrics and /v1/info show it. */
struct metrics_gen {
	uint64_t number;
	uint64_t bytes; /* embd_gen_bytes: rows (mapped or in the heap), vocabulary, norms */
	long readers;   /* requests holding it, the asking one left out */
};

/*
 * The live generations, oldest first, up to cap in out; own is the asking
 * request's generation (its own hold is left out of readers, as is the
 * server's reference to the current one). Returns how many are alive (may
 * be more than cap). Thread-safe.
 */
size_t embd_metrics_generations(const embd_metrics *m, const embd_gen *own, struct metrics_gen *out, size_t cap);

/* Count one finished request. Thread-safe. */
void embd_metrics_request(embd_metrics *m, enum route_id route, int status, uint64_t duration_ns);

/*
 * Render the text exposition into buf (cap bytes); the budget gives the
 * accounting gauges and the pool its size, gen (the current generation,
 * borrowed) the sizes of what it holds. self_bytes, what the scrape itself
 * holds, is left out of the in-flight gauge, so that an idle daemon reads 0.
 * Returns the length, or 0 if cap is too small.
 */
size_t embd_metrics_render(const embd_metrics *m, const embd_budget *budget, const embd_pool *pool, const embd_gen *gen,
                           uint64_t self_bytes, char *buf, size_t cap);

/* The compute pool's gauges and counters, appended after embd_metrics_render's. Returns the length, or 0. */
size_t embd_metrics_render_compute(const embd_compute *c, char *buf, size_t cap);

/* The large responses' line (turns.h): how many waited, how many wait now. Returns the length, or 0. */
size_t embd_metrics_render_turns(const embd_turns *t, char *buf, size_t cap);

/* Bytes embd_metrics_render, embd_metrics_render_compute and embd_metrics_render_turns need at most, together. */
size_t embd_metrics_bound(void);

#endif
