/* Per-request memory accounting against a global budget, and the warm buffer pool. */
#include "acct.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>

/*
 * Every block starts with this header; the caller sees what follows. While
 * held, prev/next link it into its accountant's list; while idle, next links
 * it into its pool class's list.
 */
struct hdr {
	struct hdr *prev, *next;
	uint64_t bytes; /* the whole block, header included: what it charges */
	uint32_t klass; /* pool class, or NO_CLASS for a plain malloc size */
	uint32_t magic;
};
#define HDR_MAGIC 0xacc7b0f5u
#define NO_CLASS  UINT32_MAX
#define MIN_CLASS ((size_t)1 << EMBD_POOL_MIN_SHIFT)
#define MAX_CLASS ((size_t)1 << EMBD_POOL_MAX_SHIFT)
_Static_assert(sizeof(struct hdr) <= EMBD_ACCT_HDR_BYTES, "the header fits its room");
_Static_assert(EMBD_ACCT_HDR_BYTES % 16 == 0, "payloads keep 16-byte alignment");
_Static_assert(EMBD_POOL_STEPS == 4, "class_of assumes quarter steps");

/* The payload of class k: (4 + k % 4) quarters of 2^(MIN_SHIFT + k / 4). */
static size_t class_size(uint32_t k)
{
	return (size_t)(EMBD_POOL_STEPS + k % EMBD_POOL_STEPS) << (EMBD_POOL_MIN_SHIFT + k / EMBD_POOL_STEPS - 2);
}

/* The smallest class whose payload holds n bytes (MIN_CLASS <= n <= MAX_CLASS). */
static uint32_t class_of(size_t n)
{
	unsigned s = 63 - (unsigned)__builtin_clzll((unsigned long long)n); /* 2^s <= n < 2^(s+1) */
	size_t quarter = (size_t)1 << (s - 2);
	size_t q = (n + quarter - 1) / quarter; /* 4..8 quarters; 8 is the next power's first class */
	return (uint32_t)((s - EMBD_POOL_MIN_SHIFT) * EMBD_POOL_STEPS + (q - EMBD_POOL_STEPS));
}

/* The payload a block for n bytes has, and its class (NO_CLASS: plain malloc of exactly n). */
static size_t payload_of(size_t n, uint32_t *klass)
{
	if (n < MIN_CLASS || n > MAX_CLASS) {
		*klass = NO_CLASS;
		return n;
	}
	*klass = class_of(n);
	return class_size(*klass);
}

uint64_t embd_acct_heap_bytes(uint64_t n)
{
	if (n > UINT64_MAX - 8192)
		return UINT64_MAX;
	if (n >= ((uint64_t)128 << 10)) /* glibc may mmap it: whole pages, with a 16-byte chunk header */
		return (n + 16 + 4095) & ~(uint64_t)4095;
	uint64_t chunk = (n + 8 + 15) & ~(uint64_t)15; /* the size word, rounded to 16 */
	return chunk < 32 ? 32 : chunk;
}

uint64_t embd_acct_block_bytes(size_t n)
{
	if (n > SIZE_MAX - EMBD_ACCT_HDR_BYTES)
		return UINT64_MAX;
	uint32_t k;
	return embd_acct_heap_bytes((uint64_t)payload_of(n, &k) + EMBD_ACCT_HDR_BYTES);
}

void embd_pool_init(embd_pool *p, uint64_t keep_bytes)
{
	pthread_mutex_init(&p->lock, NULL);
	for (int i = 0; i < EMBD_POOL_CLASSES; i++)
		p->free[i] = NULL;
	p->keep_bytes = keep_bytes;
	p->idle_bytes = 0;
	atomic_init(&p->allocated_bytes, 0);
}

void embd_pool_destroy(embd_pool *p)
{
	for (int i = 0; i < EMBD_POOL_CLASSES; i++) {
		while (p->free[i] != NULL) {
			struct hdr *h = p->free[i];
			p->free[i] = h->next;
			atomic_fetch_sub(&p->allocated_bytes, h->bytes);
			free(h);
		}
	}
	p->idle_bytes = 0;
	pthread_mutex_destroy(&p->lock);
}

/* A block of size bytes (charged as bytes) in class k: a warm one when the pool has one, else a new one. */
static struct hdr *block_get(embd_pool *p, size_t size, uint64_t bytes, uint32_t k)
{
	struct hdr *h = NULL;
	if (p != NULL && k != NO_CLASS) {
		pthread_mutex_lock(&p->lock);
		h = p->free[k];
		if (h != NULL) {
			p->free[k] = h->next;
			p->idle_bytes -= bytes;
		}
		pthread_mutex_unlock(&p->lock);
		if (h != NULL)
			return h;
	}
	h = malloc(size);
	if (h != NULL && p != NULL)
		atomic_fetch_add(&p->allocated_bytes, bytes);
	return h;
}

/* Keep a class block idle if the pool has room under keep_bytes; otherwise free it. */
static void block_put(embd_pool *p, struct hdr *h)
{
	if (p == NULL) {
		free(h);
		return;
	}
	uint64_t bytes = h->bytes;
	if (h->klass != NO_CLASS) {
		pthread_mutex_lock(&p->lock);
		if (p->idle_bytes + bytes <= p->keep_bytes) {
			h->prev = NULL;
			h->next = p->free[h->klass];
			p->free[h->klass] = h;
			p->idle_bytes += bytes;
			h = NULL;
		}
		pthread_mutex_unlock(&p->lock);
		if (h == NULL)
			return;
	}
	/* Counted down before the free, so the gauge never reads below what is really out. */
	atomic_fetch_sub(&p->allocated_bytes, bytes);
	free(h);
}

void embd_budget_init(embd_budget *b, uint64_t limit)
{
	atomic_init(&b->inflight, 0);
	atomic_init(&b->peak, 0);
	b->limit = limit;
	b->reserve = 0;
}

void embd_budget_set_reserve(embd_budget *b, uint64_t reserve)
{
	b->reserve = reserve < b->limit ? reserve : 0;
}

uint64_t embd_budget_inflight(const embd_budget *b)
{
	return atomic_load(&((embd_budget *)b)->inflight);
}

uint64_t embd_budget_peak(const embd_budget *b)
{
	return atomic_load(&((embd_budget *)b)->peak);
}

void embd_acct_init(embd_acct *a, embd_budget *budget, embd_pool *pool, uint64_t limit)
{
	a->budget = budget;
	a->pool = pool;
	a->limit = limit;
	a->held = 0;
	a->peak = 0;
	a->need = 0;
	a->blocks = NULL;
}

/* Charge n bytes if the in-flight total stays within ceiling (0: unlimited). */
static int charge(embd_acct *a, uint64_t n, uint64_t ceiling)
{
	if (n > UINT64_MAX - a->held || (a->limit != 0 && a->held + n > a->limit)) {
		a->need = n > UINT64_MAX - a->held ? UINT64_MAX : a->held + n;
		return EMBD_ETOOBIG;
	}
	/*
	 * Compare-and-swap rather than add-then-undo, so that the in-flight total
	 * never reads above the limit, not even for an instant.
	 */
	embd_budget *b = a->budget;
	uint64_t was = atomic_load_explicit(&b->inflight, memory_order_relaxed), now;
	do {
		if (n > UINT64_MAX - was || (ceiling != 0 && was + n > ceiling)) {
			a->need = a->held + n;
			return EMBD_EBUSY;
		}
		now = was + n;
	} while (!atomic_compare_exchange_weak(&b->inflight, &was, now));
	uint64_t peak = atomic_load_explicit(&b->peak, memory_order_relaxed);
	while (now > peak && !atomic_compare_exchange_weak(&b->peak, &peak, now))
		;
	a->held += n;
	if (a->held > a->peak)
		a->peak = a->held;
	return 0;
}

int embd_acct_charge(embd_acct *a, uint64_t n)
{
	return charge(a, n, a->budget->limit - a->budget->reserve);
}

int embd_acct_charge_reserved(embd_acct *a, uint64_t n)
{
	return charge(a, n, a->budget->limit);
}

void embd_acct_uncharge(embd_acct *a, uint64_t n)
{
	a->held -= n;
	atomic_fetch_sub(&a->budget->inflight, n);
}

static int alloc(embd_acct *a, size_t n, void **out, int (*charge_fn)(embd_acct *, uint64_t))
{
	uint64_t bytes = embd_acct_block_bytes(n);
	if (bytes == UINT64_MAX) { /* no block that size can exist, whatever the limits */
		a->need = UINT64_MAX;
		return EMBD_ETOOBIG;
	}
	int rc = charge_fn(a, bytes);
	if (rc != 0)
		return rc;
	uint32_t klass;
	size_t size = payload_of(n, &klass) + EMBD_ACCT_HDR_BYTES;
	struct hdr *h = block_get(a->pool, size, bytes, klass);
	if (h == NULL) {
		embd_acct_uncharge(a, bytes);
		return -ENOMEM;
	}
	h->bytes = bytes;
	h->klass = klass;
	h->magic = HDR_MAGIC;
	h->prev = NULL;
	h->next = a->blocks;
	if (h->next != NULL)
		h->next->prev = h;
	a->blocks = h;
	*out = (char *)h + EMBD_ACCT_HDR_BYTES;
	return 0;
}

int embd_acct_alloc(embd_acct *a, size_t n, void **out)
{
	return alloc(a, n, out, embd_acct_charge);
}

int embd_acct_alloc_reserved(embd_acct *a, size_t n, void **out)
{
	return alloc(a, n, out, embd_acct_charge_reserved);
}

/* Unlink a held block, give back its charge and hand it to the pool (or free it). */
static void release(embd_acct *a, struct hdr *h)
{
	assert(h->magic == HDR_MAGIC);
	if (h->prev != NULL)
		h->prev->next = h->next;
	else
		a->blocks = h->next;
	if (h->next != NULL)
		h->next->prev = h->prev;
	h->magic = 0;
	embd_acct_uncharge(a, h->bytes);
	block_put(a->pool, h);
}

void embd_acct_free(embd_acct *a, void *p)
{
	if (p != NULL)
		release(a, (struct hdr *)((char *)p - EMBD_ACCT_HDR_BYTES));
}

uint64_t embd_acct_close(embd_acct *a)
{
	struct hdr *h = a->blocks;
	a->blocks = NULL;
	while (h != NULL) {
		struct hdr *next = h->next;
		assert(h->magic == HDR_MAGIC);
		h->magic = 0;
		embd_acct_uncharge(a, h->bytes);
		block_put(a->pool, h);
		h = next;
	}
	uint64_t left = a->held;
	if (left != 0)
		embd_acct_uncharge(a, left);
	return left;
}
