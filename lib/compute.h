/* The compute pool: a bounded queue of heavy work run on threads of its own, cancelled when it is no longer wanted. */
#ifndef EMBD_COMPUTE_H
#define EMBD_COMPUTE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Heavy work (a similarity search over the whole table, pooling, norms) runs
 * here, never on a thread that serves requests, as libuv's work queue and
 * nginx's thread pools keep blocking work off their event loops. A work is
 * admitted whole or not at all: the queue holds at most `queue` works
 * admitted and not yet done (queued or running), and a submit past that is
 * refused at once, so that the caller can answer 503 instead of waiting.
 *
 * A work may be split into parts (row ranges of one search, say): threads
 * take parts in submission order, so one work's parts run side by side on
 * every thread before the next work starts, and a lone query uses every
 * core without a thread of its own.
 *
 * Cancelling: each work carries a flag its parts read between blocks of
 * their work (embd_work_cancelled). The pool sets it when the work's file
 * descriptor hangs up (its client closed the connection: a watcher thread
 * polls the descriptors of every admitted work for POLLRDHUP, since an HTTP
 * library does not report the disconnect of a connection it has suspended),
 * when its deadline passes, and when the pool stops. A part that sees it
 * returns early; done is still called once.
 */

typedef struct embd_work embd_work;

struct embd_work {
	/* Filled by the submitter before embd_compute_submit; borrowed by the pool until done is called. */
	void (*run)(embd_work *w, unsigned part); /* once per part, on a pool thread; parts may run at once */
	void (*done)(embd_work *w);               /* once, after every part has returned, on a pool thread */
	unsigned parts;                           /* at least 1 */
	int fd;                                   /* hung up: cancel (EMBD_ECANCELED); -1: not watched */
	uint64_t deadline_ns;                     /* embd_now_ns clock; passed: cancel (EMBD_EDEADLINE); 0: none */
	uint64_t bytes;                           /* memory it holds while admitted (see embd_compute_start) */
	/* Set by the pool. */
	atomic_int cancel; /* 0, or why the work was cancelled: EMBD_ECANCELED, EMBD_EDEADLINE, EMBD_ESHUTDOWN */
	uint64_t queued_ns, started_ns; /* when it was admitted, when its first part started (0: never) */
	/* The pool's own. */
	uint64_t id;
	unsigned next_part, parts_left;
	embd_work *next;
};

/* Why w was cancelled (0: it was not). Parts call it between blocks; thread-safe. */
static inline int embd_work_cancelled(const embd_work *w)
{
	return atomic_load_explicit(&((embd_work *)w)->cancel, memory_order_relaxed);
}

typedef struct embd_compute {
	pthread_mutex_t lock;
	pthread_cond_t wake; /* parts to run, or stopping */
	pthread_t *threads;
	unsigned nthreads; /* set at start, never changed */
	pthread_t watcher;
	int watcher_started;
	int wake_fds[2];      /* a pipe: wakes the watcher when a work is admitted, or the pool stops */
	embd_work *head;      /* works with parts not yet started, in order */
	embd_work *tail;      /* the last of them */
	embd_work **admitted; /* every work admitted and not done (queue entries), for the watcher */
	size_t nadmitted, queue;
	uint64_t bytes_limit;        /* what admitted works may hold together; 0: no limit */
	_Atomic uint64_t bytes_held; /* what they hold now (under lock; atomic for the metrics) */
	uint64_t next_id;
	int stopping;
	int stopped;         /* stop has joined every thread */
	int nice;            /* added to the pool threads' nice value */
	int pin;             /* one thread per core: thread i runs on the i-th core the process may use */
	atomic_uint started; /* threads that have begun (their index) */
	/* Counters (read at any time). */
	atomic_ulong running;            /* parts running now */
	atomic_ulong done_total;         /* works done */
	atomic_ulong refused_total;      /* submits refused: the queue was full */
	atomic_ulong cancelled_total[3]; /* works cancelled: client gone, deadline, shutdown */
	_Atomic uint64_t busy_ns;        /* time spent running parts, summed over threads */
} embd_compute;

/*
 * Start threads (0: one per online core) taking works from a queue of at
 * most `queue` admitted works (at least 1) holding at most bytes_limit
 * bytes together (their `bytes`; 0: no limit; a work alone in the queue is
 * admitted whatever it holds), so that memory charged up front by queued
 * works cannot starve everything else; nice is added to the threads' nice
 * value (0: none; a positive value lets the request threads run first when
 * the cores are all busy). 0, or a negative errno (nothing started).
 */
int embd_compute_start(embd_compute *c, unsigned threads, size_t queue, uint64_t bytes_limit, int nice);

/*
 * Admit w (see embd_work). 0: its parts will run and done will be called
 * once, exactly (its bytes count as held until then). EMBD_ECOMPUTEBUSY:
 * the queue is full, or w's bytes do not fit beside the others'; EMBD_ESHUTDOWN: the
 * pool is stopping; EMBD_EBADPARAM: parts 0 or no run/done. When refused, w
 * is untouched and done is never called. Thread-safe.
 */
int embd_compute_submit(embd_compute *c, embd_work *w);

/*
 * Stop: refuse new works (submit says EMBD_ESHUTDOWN from now on, from any
 * thread), cancel every admitted one (EMBD_ESHUTDOWN: parts not yet started
 * run only to see it and return), wait for every done, join the threads.
 * No-op if never started or stopped already. Not with another stop at once.
 */
void embd_compute_stop(embd_compute *c);

/* Stop if need be, then free what the pool holds; nothing may use c after it. No-op if never started. */
void embd_compute_destroy(embd_compute *c);

/* Works admitted and not done (queued or running); parts running now. Thread-safe. */
size_t embd_compute_admitted(embd_compute *c);
unsigned long embd_compute_running(const embd_compute *c);

/* Threads the pool runs (after start). */
unsigned embd_compute_threads(const embd_compute *c);

#endif
