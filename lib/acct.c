/* Per-request memory accounting against a global budget, and the warm buffer pool. */
#include "acct.h"

#include <errno.h>
#include <stdlib.h>

/* Every accounted buffer starts with this header; the caller sees what follows. */
struct hdr {
	uint64_t charged; /* bytes charged for it now */
	uint32_t klass;   /* pool class, or UINT32_MAX for plain malloc */
	uint32_t magic;
};
#define HDR_MAGIC 0xacc7b0f5u
#define HDR_SIZE  16
_Static_assert(sizeof(struct hdr) == HDR_SIZE, "header keeps 16-byte alignment");

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
			void *next = *(void **)p->free[i];
			free(p->free[i]);
			atomic_fetch_sub(&p->allocated_bytes, (size_t)1 << (i + EMBD_POOL_MIN_SHIFT));
			p->free[i] = next;
		}
	}
	p->idle_bytes = 0;
	pthread_mutex_destroy(&p->lock);
}

static uint32_t class_of(size_t total)
{
	uint32_t k = 0;
	while (((size_t)1 << (k + EMBD_POOL_MIN_SHIFT)) < total)
		k++;
	return k;
}

/* A block of at least total bytes (header included); *klass tells where it goes back. */
static void *pool_get(embd_pool *p, size_t total, uint32_t *klass)
{
	if (p == NULL || total < ((size_t)1 << EMBD_POOL_MIN_SHIFT) || total > ((size_t)1 << EMBD_POOL_MAX_SHIFT)) {
		*klass = UINT32_MAX;
		return malloc(total);
	}
	uint32_t k = class_of(total);
	size_t size = (size_t)1 << (k + EMBD_POOL_MIN_SHIFT);
	*klass = k;
	pthread_mutex_lock(&p->lock);
	void *b = p->free[k];
	if (b != NULL) {
		p->free[k] = *(void **)b;
		p->idle_bytes -= size;
	}
	pthread_mutex_unlock(&p->lock);
	if (b == NULL) {
		b = malloc(size);
		if (b != NULL)
			atomic_fetch_add(&p->allocated_bytes, size);
	}
	return b;
}

static void pool_put(embd_pool *p, void *b, uint32_t k)
{
	if (k == UINT32_MAX) {
		free(b);
		return;
	}
	size_t size = (size_t)1 << (k + EMBD_POOL_MIN_SHIFT);
	pthread_mutex_lock(&p->lock);
	if (p->idle_bytes + size <= p->keep_bytes) {
		*(void **)b = p->free[k];
		p->free[k] = b;
		p->idle_bytes += size;
		b = NULL;
	}
	pthread_mutex_unlock(&p->lock);
	if (b != NULL) {
		free(b);
		atomic_fetch_sub(&p->allocated_bytes, size);
	}
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

int embd_acct_alloc(embd_acct *a, size_t n, void **out)
{
	if (n > SIZE_MAX - HDR_SIZE)
		return embd_acct_charge(a, UINT64_MAX);
	int rc = embd_acct_charge(a, n);
	if (rc != 0)
		return rc;
	uint32_t klass;
	struct hdr *h = pool_get(a->pool, n + HDR_SIZE, &klass);
	if (h == NULL) {
		embd_acct_uncharge(a, n);
		return -ENOMEM;
	}
	h->charged = n;
	h->klass = klass;
	h->magic = HDR_MAGIC;
	*out = (char *)h + HDR_SIZE;
	return 0;
}

void embd_acct_free(embd_acct *a, void *p)
{
	if (p == NULL)
		return;
	struct hdr *h = (struct hdr *)((char *)p - HDR_SIZE);
	embd_acct_uncharge(a, h->charged);
	h->magic = 0;
	pool_put(a->pool, h, h->klass);
}

void embd_acct_trim(embd_acct *a, void *p, size_t n)
{
	struct hdr *h = (struct hdr *)((char *)p - HDR_SIZE);
	if (n < h->charged) {
		embd_acct_uncharge(a, h->charged - n);
		h->charged = n;
	}
}

uint64_t embd_acct_close(embd_acct *a)
{
	uint64_t left = a->held;
	if (left != 0)
		embd_acct_uncharge(a, left);
	return left;
}

int embd_acct_alloc_reserved(embd_acct *a, size_t n, void **out)
{
	if (n > SIZE_MAX - HDR_SIZE)
		return embd_acct_charge_reserved(a, UINT64_MAX);
	int rc = embd_acct_charge_reserved(a, n);
	if (rc != 0)
		return rc;
	uint32_t klass;
	struct hdr *h = pool_get(a->pool, n + HDR_SIZE, &klass);
	if (h == NULL) {
		embd_acct_uncharge(a, n);
		return -ENOMEM;
	}
	h->charged = n;
	h->klass = klass;
	h->magic = HDR_MAGIC;
	*out = (char *)h + HDR_SIZE;
	return 0;
}
