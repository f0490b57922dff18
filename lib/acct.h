/* Memory accounting: per-request accountants charged against a global in-flight budget, and a pool of warm buffers. */
#ifndef EMBD_ACCT_H
#define EMBD_ACCT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/*
 * Buffers are kept warm between requests: on these machines a fresh
 * anonymous page costs ~11 us to fault in, so a large buffer malloc'd and
 * returned to the OS per request costs more than the copy it holds. The
 * pool keeps freed buffers in power-of-two classes up to keep_bytes in all.
 * Pool memory is not charged to anyone: requests are charged the bytes they
 * asked for while they hold them.
 */
#define EMBD_POOL_MIN_SHIFT 12 /* 4 KiB: below this, plain malloc */
#define EMBD_POOL_MAX_SHIFT 30 /* 1 GiB: above this, plain malloc */
#define EMBD_POOL_CLASSES   (EMBD_POOL_MAX_SHIFT - EMBD_POOL_MIN_SHIFT + 1)

typedef struct embd_pool {
	pthread_mutex_t lock;
	void *free[EMBD_POOL_CLASSES]; /* singly linked through the first word */
	uint64_t keep_bytes;           /* most bytes kept idle */
	uint64_t idle_bytes;           /* bytes idle in the lists now */
	atomic_ullong allocated_bytes; /* bytes obtained from malloc and not freed */
} embd_pool;

/* The budget shared by all requests in flight. */
typedef struct embd_budget {
	_Atomic uint64_t inflight; /* bytes charged now, by all requests */
	_Atomic uint64_t peak;     /* highest inflight seen */
	uint64_t limit;            /* 0: unlimited */
	uint64_t reserve;          /* the top of limit, kept for embd_acct_charge_reserved */
} embd_budget;

/* One request's accountant. Not thread-safe: one request, one thread at a time. */
typedef struct embd_acct {
	embd_budget *budget; /* borrowed */
	embd_pool *pool;     /* borrowed; may be NULL (plain malloc) */
	uint64_t limit;      /* per-request limit; 0: unlimited */
	uint64_t held;       /* bytes charged now */
	uint64_t peak;       /* highest held */
	uint64_t need;       /* on a failed charge: what would have been held */
} embd_acct;

void embd_pool_init(embd_pool *p, uint64_t keep_bytes);
/* Free every idle buffer. Buffers still out are the holders' to give back first. */
void embd_pool_destroy(embd_pool *p);

void embd_budget_init(embd_budget *b, uint64_t limit);
/*
 * Keep the top reserve bytes of the limit for embd_acct_charge_reserved: the
 * small fixed records that let every connection be answered (if only with a
 * 503) without ever taking the in-flight total past the limit. reserve < limit.
 */
void embd_budget_set_reserve(embd_budget *b, uint64_t reserve);
uint64_t embd_budget_inflight(const embd_budget *b);
uint64_t embd_budget_peak(const embd_budget *b);

/* Start accounting one request (budget and pool borrowed; pool may be NULL). */
void embd_acct_init(embd_acct *a, embd_budget *budget, embd_pool *pool, uint64_t limit);

/*
 * Charge n bytes. Errors, with nothing charged: EMBD_ETOOBIG when the request
 * would hold more than its limit, EMBD_EBUSY when all requests together would
 * pass the budget's limit. a->need then says what the request would have held.
 */
int embd_acct_charge(embd_acct *a, uint64_t n);

/* As embd_acct_charge, but may use the budget's reserve. */
int embd_acct_charge_reserved(embd_acct *a, uint64_t n);

/* Give back n bytes charged earlier (n <= a->held). */
void embd_acct_uncharge(embd_acct *a, uint64_t n);

/*
 * Charge n bytes and hand out a buffer of at least n bytes (new; give it back
 * with embd_acct_free on the same accountant). Errors: those of charge, or
 * -ENOMEM (nothing charged). n may be 0.
 */
int embd_acct_alloc(embd_acct *a, size_t n, void **out);

/* Give back a buffer from embd_acct_alloc and its charge. NULL is a no-op. */
void embd_acct_free(embd_acct *a, void *p);

/* Shrink the charge of buffer p to its first n bytes (n <= its size); the memory stays. */
void embd_acct_trim(embd_acct *a, void *p, size_t n);

/* End the request: gives back whatever is still charged; returns how much that was (0 when every buffer was freed). */
uint64_t embd_acct_close(embd_acct *a);

/*
 * As embd_acct_alloc, but may use the budget's reserve: for the small answers
 * that must be given whatever the load (/healthz, /metrics).
 */
int embd_acct_alloc_reserved(embd_acct *a, size_t n, void **out);

#endif
