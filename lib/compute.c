/* The compute pool: a bounded queue of heavy work run on threads of its own, cancelled when it is no longer wanted. */
#include "compute.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clock.h"
#include "error.h"

/* The index of a cancel reason in cancelled_total. */
static int reason_index(int why)
{
	return why == EMBD_ECANCELED ? 0 : why == EMBD_EDEADLINE ? 1 : 2;
}

/* Set w's flag to why unless it is set already (the first reason stands); count it. Under c->lock. */
static void cancel(embd_compute *c, embd_work *w, int why)
{
	int none = 0;
	if (atomic_compare_exchange_strong(&w->cancel, &none, why))
		atomic_fetch_add(&c->cancelled_total[reason_index(why)], 1);
}

static void wake_watcher(embd_compute *c)
{
	char b = 1;
	ssize_t n = write(c->wake_fds[1], &b, 1); /* a full pipe already wakes it */
	(void)n;
}

/* Take w out of the admitted set, with what it holds. Under c->lock. */
static void unadmit(embd_compute *c, embd_work *w)
{
	atomic_fetch_sub(&c->bytes_held, w->bytes);
	for (size_t i = 0; i < c->nadmitted; i++) {
		if (c->admitted[i] == w) {
			c->admitted[i] = c->admitted[--c->nadmitted];
			return;
		}
	}
}

/*
 * Thread i runs on the i-th core the process may use, when there are no more
 * threads than cores: reniced threads carry little load weight, and the
 * kernel then left a search's two parts sharing one core for part of the time
 * while the other idled (a lone query took 9-10.5 ms instead of 7.5-8).
 */
static void pin(unsigned i)
{
	cpu_set_t allowed, one;
	if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
		return;
	for (int cpu = 0, seen = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed) || (unsigned)seen++ != i)
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		(void)pthread_setaffinity_np(pthread_self(), sizeof one, &one);
		return;
	}
}

static void *worker(void *arg)
{
	embd_compute *c = arg;
	unsigned index = atomic_fetch_add(&c->started, 1);
	if (c->pin)
		pin(index);
	if (c->nice != 0) {
		/* Linux applies a nice value to the calling thread alone when given its thread id. */
		errno = 0;
		int cur = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
		if (errno == 0)
			(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), cur + c->nice);
	}
	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (c->head == NULL && !c->stopping)
			pthread_cond_wait(&c->wake, &c->lock);
		if (c->head == NULL) /* stopping, and nothing left to run */
			break;
		embd_work *w = c->head;
		unsigned part = w->next_part++;
		if (w->next_part == w->parts) {
			c->head = w->next;
			if (c->head == NULL)
				c->tail = NULL;
		}
		uint64_t t0 = embd_now_ns();
		if (w->started_ns == 0)
			w->started_ns = t0;
		atomic_fetch_add(&c->running, 1);
		pthread_mutex_unlock(&c->lock);
		w->run(w, part);
		atomic_fetch_add(&c->busy_ns, embd_now_ns() - t0);
		atomic_fetch_sub(&c->running, 1);
		pthread_mutex_lock(&c->lock);
		if (--w->parts_left == 0) {
			unadmit(c, w);
			atomic_fetch_add(&c->done_total, 1);
			pthread_mutex_unlock(&c->lock);
			w->done(w); /* the last touch of w: done may free it */
			pthread_mutex_lock(&c->lock);
			pthread_cond_broadcast(&c->wake); /* stop waits for the admitted set to empty */
		}
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/*
 * A cancelled work none of whose parts has started leaves the queue at once,
 * so that what it holds is given back now, not when a thread gets to it (the
 * threads may be busy with long parts of other works). Under c->lock; 1 when
 * it was taken out (the caller then calls done, without the lock).
 */
static int dequeue_unstarted(embd_compute *c, embd_work *w)
{
	if (w->next_part != 0)
		return 0;
	embd_work *prev = NULL;
	for (embd_work *x = c->head; x != NULL; prev = x, x = x->next) {
		if (x != w)
			continue;
		if (prev != NULL)
			prev->next = w->next;
		else
			c->head = w->next;
		if (c->tail == w)
			c->tail = prev;
		unadmit(c, w);
		atomic_fetch_add(&c->done_total, 1);
		return 1;
	}
	return 0;
}

/*
 * The watcher: polls the descriptors of the admitted works for a hang-up and
 * cancels those whose client has gone or whose deadline has passed. Only
 * POLLRDHUP is asked for (hang-ups and errors are always reported), so a
 * client that has sent its next request early does not keep poll awake.
 */
static void *watcher(void *arg)
{
	embd_compute *c = arg;
	size_t cap = c->queue + 1;
	struct pollfd *fds = calloc(cap, sizeof *fds);
	uint64_t *ids = calloc(cap, sizeof *ids);
	embd_work **dropped = calloc(cap, sizeof(embd_work *));
	if (fds == NULL || ids == NULL || dropped == NULL) {
		free(fds);
		free(ids);
		free(dropped);
		return NULL; /* works are still cancelled at stop; only hang-ups and deadlines go unseen */
	}
	pthread_mutex_lock(&c->lock);
	size_t ndropped = 0;
	while (!c->stopping) {
		/* Works cancelled before they started: done, without the lock (done may resume a connection). */
		if (ndropped != 0) {
			pthread_mutex_unlock(&c->lock);
			for (size_t i = 0; i < ndropped; i++)
				dropped[i]->done(dropped[i]);
			ndropped = 0;
			pthread_mutex_lock(&c->lock);
			pthread_cond_broadcast(&c->wake);
			continue;
		}
		size_t n = 1;
		fds[0] = (struct pollfd){c->wake_fds[0], POLLIN, 0};
		uint64_t now = embd_now_ns(), next = UINT64_MAX;
		for (size_t i = 0; i < c->nadmitted; i++) {
			embd_work *w = c->admitted[i];
			if (atomic_load(&w->cancel) != 0)
				continue;
			if (w->deadline_ns != 0 && w->deadline_ns <= now) {
				cancel(c, w, EMBD_EDEADLINE);
				if (dequeue_unstarted(c, w)) {
					dropped[ndropped++] = w;
					i--; /* unadmit moved the last work into slot i */
				}
				continue;
			}
			if (w->deadline_ns != 0 && w->deadline_ns < next)
				next = w->deadline_ns;
			if (w->fd >= 0 && n < cap) {
				fds[n] = (struct pollfd){w->fd, POLLRDHUP, 0};
				ids[n++] = w->id;
			}
		}
		if (ndropped != 0) /* past their deadline before they started: done first */
			continue;
		pthread_mutex_unlock(&c->lock);
		int timeout = next == UINT64_MAX ? -1 : (int)((next - now) / 1000000u + 1);
		int k = poll(fds, (nfds_t)n, timeout);
		pthread_mutex_lock(&c->lock);
		if (k <= 0)
			continue;
		if (fds[0].revents != 0) {
			char buf[64];
			while (read(c->wake_fds[0], buf, sizeof buf) > 0)
				;
		}
		/* A descriptor that hung up: its work, if still admitted (ids are never reused, descriptors are). */
		for (size_t j = 1; j < n; j++) {
			if ((fds[j].revents & (POLLRDHUP | POLLHUP | POLLERR)) == 0)
				continue;
			for (size_t i = 0; i < c->nadmitted; i++) {
				embd_work *w = c->admitted[i];
				if (w->id != ids[j])
					continue;
				cancel(c, w, EMBD_ECANCELED);
				if (dequeue_unstarted(c, w))
					dropped[ndropped++] = w;
				break;
			}
		}
	}
	pthread_mutex_unlock(&c->lock);
	for (size_t i = 0; i < ndropped; i++) /* dropped just before stop: still done, once */
		dropped[i]->done(dropped[i]);
	free(fds);
	free(ids);
	free(dropped);
	return NULL;
}

int embd_compute_start(embd_compute *c, unsigned threads, size_t queue, uint64_t bytes_limit, int nice)
{
	memset(c, 0, sizeof *c);
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (unsigned)n : 1;
	}
	c->queue = queue > 0 ? queue : 1;
	c->bytes_limit = bytes_limit;
	c->nice = nice;
	cpu_set_t allowed;
	c->pin = sched_getaffinity(0, sizeof allowed, &allowed) == 0 && threads <= (unsigned)CPU_COUNT(&allowed);
	c->threads = calloc(threads, sizeof *c->threads);
	c->admitted = calloc(c->queue, sizeof(embd_work *));
	if (c->threads == NULL || c->admitted == NULL)
		goto fail_mem;
	if (pipe2(c->wake_fds, O_NONBLOCK | O_CLOEXEC) != 0)
		goto fail_mem;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->wake, NULL);
	int err = pthread_create(&c->watcher, NULL, watcher, c);
	if (err != 0)
		goto fail_threads;
	c->watcher_started = 1;
	for (; c->nthreads < threads; c->nthreads++)
		if ((err = pthread_create(&c->threads[c->nthreads], NULL, worker, c)) != 0)
			goto fail_threads;
	return 0;
fail_threads:
	embd_compute_destroy(c);
	return -err;
fail_mem:
	err = errno != 0 ? errno : ENOMEM;
	free(c->threads);
	free(c->admitted);
	memset(c, 0, sizeof *c);
	return -err;
}

int embd_compute_submit(embd_compute *c, embd_work *w)
{
	if (w->parts == 0 || w->run == NULL || w->done == NULL)
		return EMBD_EBADPARAM;
	pthread_mutex_lock(&c->lock);
	uint64_t held = atomic_load(&c->bytes_held);
	int full = c->nadmitted >= c->queue || (c->bytes_limit != 0 && c->nadmitted > 0 &&
	                                        (w->bytes > c->bytes_limit || held > c->bytes_limit - w->bytes));
	int rc = c->stopping ? EMBD_ESHUTDOWN : full ? EMBD_ECOMPUTEBUSY : 0;
	if (rc == 0) {
		atomic_init(&w->cancel, 0);
		w->id = ++c->next_id;
		w->next_part = 0;
		w->parts_left = w->parts;
		w->next = NULL;
		w->queued_ns = embd_now_ns();
		w->started_ns = 0;
		c->admitted[c->nadmitted++] = w;
		atomic_fetch_add(&c->bytes_held, w->bytes);
		if (c->tail != NULL)
			c->tail->next = w;
		else
			c->head = w;
		c->tail = w;
		if (w->parts > 1)
			pthread_cond_broadcast(&c->wake);
		else
			pthread_cond_signal(&c->wake);
	} else if (rc == EMBD_ECOMPUTEBUSY) {
		atomic_fetch_add(&c->refused_total, 1);
	}
	pthread_mutex_unlock(&c->lock);
	if (rc == 0 && (w->fd >= 0 || w->deadline_ns != 0))
		wake_watcher(c);
	return rc;
}

void embd_compute_stop(embd_compute *c)
{
	if (c->threads == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->stopped) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	c->stopping = 1;
	for (size_t i = 0; i < c->nadmitted; i++)
		cancel(c, c->admitted[i], EMBD_ESHUTDOWN);
	pthread_cond_broadcast(&c->wake);
	pthread_mutex_unlock(&c->lock);
	wake_watcher(c);
	/* The workers run what is queued (each part sees the flag and returns) and exit once the queue is empty. */
	for (unsigned i = 0; i < c->nthreads; i++)
		pthread_join(c->threads[i], NULL);
	if (c->watcher_started)
		pthread_join(c->watcher, NULL);
	c->stopped = 1; /* written by the one stopping thread; read only by a later stop or destroy */
}

void embd_compute_destroy(embd_compute *c)
{
	if (c->threads == NULL)
		return;
	embd_compute_stop(c);
	close(c->wake_fds[0]);
	close(c->wake_fds[1]);
	pthread_cond_destroy(&c->wake);
	pthread_mutex_destroy(&c->lock);
	free(c->threads);
	free(c->admitted);
	c->threads = NULL;
	c->admitted = NULL;
}

size_t embd_compute_admitted(embd_compute *c)
{
	if (c->threads == NULL)
		return 0;
	pthread_mutex_lock(&c->lock);
	size_t n = c->nadmitted;
	pthread_mutex_unlock(&c->lock);
	return n;
}

unsigned long embd_compute_running(const embd_compute *c)
{
	return atomic_load(&((embd_compute *)c)->running);
}

unsigned embd_compute_threads(const embd_compute *c)
{
	return c->nthreads;
}
