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
 * returned to the OS per request costs more than the copy it holds.
 *
 * Every buffer lives in a block: a header of EMBD_ACCT_HDR_BYTES, then the
 * payload the caller sees. Payloads from 4 KiB to 1 GiB come in size
 * classes, EMBD_POOL_STEPS per power of two (1, 1.25, 1.5 and 1.75 x 2^k):
 * the header sits outside the class, so an ask of exactly 2^k bytes takes a
 * 2^k payload, and no ask gets more than 25% more payload than it asked for.
 * Asks below 4 KiB or above 1 GiB get a payload of exactly their size, from
 * plain malloc, and are never kept.
 *
 * The charge is the truth: a buffer charges its whole block (header and
 * class payload) for as long as it is held, never just the bytes asked for.
 * The pool keeps freed class blocks for reuse, at most keep_bytes of them
 * (headers included); idle blocks are charged to no one.
 */
#define EMBD_ACCT_HDR_BYTES 32 /* block header, outside the payload; keeps 16-byte alignment */
#define EMBD_POOL_MIN_SHIFT 12 /* 4 KiB: smaller payloads are plain malloc */
#define EMBD_POOL_MAX_SHIFT 30 /* 1 GiB: larger payloads are plain malloc */
#define EMBD_POOL_STEPS     4  /* classes per power of two */
#define EMBD_POOL_CLASSES   ((EMBD_POOL_MAX_SHIFT - EMBD_POOL_MIN_SHIFT) * EMBD_POOL_STEPS + 1)

typedef struct embd_pool {
	pthread_mutex_t lock;
	void *free[EMBD_POOL_CLASSES]; /* idle blocks, one list per class */
	uint64_t keep_bytes;           /* most block bytes kept idle (plan.pool_bytes) */
	uint64_t idle_bytes;           /* block bytes idle in the lists now; never above keep_bytes */
	/*
	 * Block bytes (headers included) obtained from malloc and not yet freed,
	 * for every block of every accountant using this pool, pooled classes and
	 * plain-malloc sizes alike: the blocks held by requests plus idle_bytes.
	 * Exact, not an estimate; the embd_pool_bytes gauge.
	 */
	atomic_ullong allocated_bytes;
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
	void *blocks;        /* the blocks it handed out and owns, a doubly linked list */
} embd_acct;

void embd_pool_init(embd_pool *p, uint64_t keep_bytes);
/* Free every idle block. Blocks still held are their accountants' to free first (embd_acct_close does). */
void embd_pool_destroy(embd_pool *p);

/*
 * The bytes a buffer of n bytes charges: its whole block, header and class
 * payload, as the heap holds it (embd_acct_heap_bytes). UINT64_MAX when no
 * block of n bytes can exist. Thread-safe.
 */
uint64_t embd_acct_block_bytes(size_t n);

/*
 * What malloc(n) takes from the heap, at least: glibc's chunk (n and its
 * 8-byte size word rounded up to 16, at least 32), or whole pages from
 * 128 KiB up, where it may mmap the chunk. Charging this, not n, keeps the
 * bytes charged at least the bytes held, small blocks included.
 */
uint64_t embd_acct_heap_bytes(uint64_t n);

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
 * Charge a block for n bytes (embd_acct_block_bytes(n)) and hand out its
 * payload of at least n bytes in *out (new; owned by the accountant: give it
 * back with embd_acct_free on the same accountant, or leave it to
 * embd_acct_close). A warm block of the class is reused when the pool has
 * one. Errors, with nothing charged and *out untouched: those of
 * embd_acct_charge (a->need then counts the block), or -ENOMEM. n may be 0.
 */
int embd_acct_alloc(embd_acct *a, size_t n, void **out);

/* As embd_acct_alloc, but the charge may use the budget's reserve (as embd_acct_charge_reserved). */
int embd_acct_alloc_reserved(embd_acct *a, size_t n, void **out);

/* Give back a buffer from embd_acct_alloc of this accountant, and its block's charge. NULL is a no-op. */
void embd_acct_free(embd_acct *a, void *p);

/*
 * End the request. Frees every block the accountant still holds (release is
 * structural: blocks cannot outlive their accountant; a buffer must not be
 * used after this) and gives back every charge. Returns the bytes that were
 * still charged by embd_acct_charge or embd_acct_charge_reserved and not
 * uncharged: charges with no block behind them, which only their caller
 * could have given back, i.e. a leak. Freed blocks are not counted. After
 * this, a->held is 0 and the accountant may be initialised again.
 */
uint64_t embd_acct_close(embd_acct *a);

#endif
