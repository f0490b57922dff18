/* Unit tests of the compute pool: parts, the queue bound, cancelling on hang-up, deadline and stop. */
#include "fixture.h"

#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "compute.h"
#include "error.h"

/* A work whose parts spin in blocks of 1 ms until told to finish, or cancelled. */
struct spin {
	embd_work w;
	atomic_int go;        /* parts may finish */
	atomic_int started;   /* parts that began */
	atomic_int returned;  /* parts that returned */
	atomic_int cancelled; /* parts that saw the flag */
	atomic_int done;      /* done calls */
	unsigned ran_mask;    /* bit per part, under the pool's ordering (checked after done) */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {0, (long)ms * 1000000L};
	nanosleep(&ts, NULL);
}

static void spin_run(embd_work *w, unsigned part)
{
	struct spin *s = (struct spin *)w;
	atomic_fetch_add(&s->started, 1);
	pthread_mutex_lock(&s->lock);
	s->ran_mask |= 1u << part;
	pthread_mutex_unlock(&s->lock);
	for (;;) {
		if (embd_work_cancelled(w) != 0) {
			atomic_fetch_add(&s->cancelled, 1);
			break;
		}
		if (atomic_load(&s->go))
			break;
		sleep_ms(1);
	}
	atomic_fetch_add(&s->returned, 1);
}

static void spin_done(embd_work *w)
{
	struct spin *s = (struct spin *)w;
	pthread_mutex_lock(&s->lock);
	atomic_fetch_add(&s->done, 1);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void spin_init(struct spin *s, unsigned parts, int fd, uint64_t deadline_ns)
{
	memset(s, 0, sizeof *s);
	s->w.run = spin_run;
	s->w.done = spin_done;
	s->w.parts = parts;
	s->w.fd = fd;
	s->w.deadline_ns = deadline_ns;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
}

/* Wait up to ms for done; returns the ms it took, or -1. */
static long wait_done(struct spin *s, unsigned ms)
{
	uint64_t t0 = embd_now_ns();
	while (atomic_load(&s->done) == 0) {
		if (embd_now_ns() - t0 > (uint64_t)ms * 1000000u)
			return -1;
		sleep_ms(1);
	}
	return (long)((embd_now_ns() - t0) / 1000000u);
}

static void wait_started(struct spin *s, int n)
{
	for (int i = 0; i < 5000 && atomic_load(&s->started) < n; i++)
		sleep_ms(1);
	assert_int_equal(atomic_load(&s->started), n);
}

/* Every part of a work runs, on as many threads at once as there are, and done comes once after all of them. */
static void parts_run_side_by_side(void **state)
{
	(void)state;
	embd_compute c;
	assert_int_equal(embd_compute_start(&c, 3, 4, 0, 0), 0);
	assert_int_equal(embd_compute_threads(&c), 3);
	struct spin s;
	spin_init(&s, 3, -1, 0);
	assert_int_equal(embd_compute_submit(&c, &s.w), 0);
	wait_started(&s, 3); /* all three parts at once: one work uses every thread */
	assert_int_equal(embd_compute_running(&c), 3);
	assert_int_equal(embd_compute_admitted(&c), 1);
	assert_int_equal(atomic_load(&s.done), 0);
	atomic_store(&s.go, 1);
	assert_true(wait_done(&s, 5000) >= 0);
	assert_int_equal(s.ran_mask, 7u);
	assert_int_equal(atomic_load(&s.returned), 3);
	assert_int_equal(atomic_load(&s.cancelled), 0);
	assert_int_equal(atomic_load(&s.done), 1);
	assert_int_equal(embd_compute_admitted(&c), 0);
	assert_int_equal(atomic_load(&c.done_total), 1);
	embd_compute_destroy(&c);
}

/* The queue holds `queue` works admitted and not done: one more is refused at once, and admitted once one is done. */
static void queue_is_bounded(void **state)
{
	(void)state;
	embd_compute c;
	assert_int_equal(embd_compute_start(&c, 1, 2, 0, 0), 0);
	struct spin a, b, x;
	spin_init(&a, 1, -1, 0);
	spin_init(&b, 1, -1, 0);
	spin_init(&x, 1, -1, 0);
	assert_int_equal(embd_compute_submit(&c, &a.w), 0);
	assert_int_equal(embd_compute_submit(&c, &b.w), 0); /* queued behind a: one thread */
	assert_int_equal(embd_compute_submit(&c, &x.w), EMBD_ECOMPUTEBUSY);
	assert_int_equal(atomic_load(&c.refused_total), 1);
	wait_started(&a, 1);
	assert_int_equal(atomic_load(&b.started), 0);
	atomic_store(&a.go, 1);
	assert_true(wait_done(&a, 5000) >= 0);
	assert_int_equal(embd_compute_submit(&c, &x.w), 0);
	atomic_store(&b.go, 1);
	atomic_store(&x.go, 1);
	assert_true(wait_done(&b, 5000) >= 0);
	assert_true(wait_done(&x, 5000) >= 0);
	assert_int_equal(atomic_load(&x.done), 1);
	struct spin bad;
	spin_init(&bad, 0, -1, 0);
	assert_int_equal(embd_compute_submit(&c, &bad.w), EMBD_EBADPARAM);
	embd_compute_stop(&c);
	/* Stopped: refused, done never called. */
	embd_compute_stop(&c); /* a second stop is a no-op */
	assert_int_equal(embd_compute_submit(&c, &x.w), EMBD_ESHUTDOWN);
	embd_compute_destroy(&c);
}

/* Admitted works hold at most bytes_limit together: one that does not fit is refused until others are done. */
static void bytes_are_bounded(void **state)
{
	(void)state;
	embd_compute c;
	assert_int_equal(embd_compute_start(&c, 1, 8, 100, 0), 0);
	struct spin a, b, small, big;
	spin_init(&a, 1, -1, 0);
	spin_init(&b, 1, -1, 0);
	spin_init(&small, 1, -1, 0);
	spin_init(&big, 1, -1, 0);
	a.w.bytes = 60;
	b.w.bytes = 50;
	small.w.bytes = 40;
	big.w.bytes = 500;
	/* Alone, a work is admitted whatever it holds: nothing else would ever let it in. */
	assert_int_equal(embd_compute_submit(&c, &big.w), 0);
	assert_int_equal(atomic_load(&c.bytes_held), 500);
	assert_int_equal(embd_compute_submit(&c, &small.w), EMBD_ECOMPUTEBUSY);
	atomic_store(&big.go, 1);
	assert_true(wait_done(&big, 2000) >= 0);
	assert_int_equal(atomic_load(&c.bytes_held), 0);
	assert_int_equal(embd_compute_submit(&c, &a.w), 0);
	assert_int_equal(embd_compute_submit(&c, &b.w), EMBD_ECOMPUTEBUSY); /* 60 + 50 > 100 */
	assert_int_equal(embd_compute_submit(&c, &small.w), 0);             /* 60 + 40 = 100 */
	assert_int_equal(atomic_load(&c.bytes_held), 100);
	assert_int_equal(atomic_load(&c.refused_total), 2);
	atomic_store(&a.go, 1);
	assert_true(wait_done(&a, 2000) >= 0);
	assert_int_equal(embd_compute_submit(&c, &b.w), 0); /* 40 + 50 */
	atomic_store(&small.go, 1);
	atomic_store(&b.go, 1);
	assert_true(wait_done(&small, 2000) >= 0);
	assert_true(wait_done(&b, 2000) >= 0);
	assert_int_equal(atomic_load(&c.bytes_held), 0);
	embd_compute_destroy(&c);
}

/* A work whose descriptor hangs up (its client closed the connection) is cancelled within milliseconds. */
static void hangup_cancels(void **state)
{
	(void)state;
	embd_compute c;
	assert_int_equal(embd_compute_start(&c, 2, 4, 0, 0), 0);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct spin s, other;
	spin_init(&s, 2, sv[0], 0);
	spin_init(&other, 1, -1, 0);
	assert_int_equal(embd_compute_submit(&c, &s.w), 0);
	assert_int_equal(embd_compute_submit(&c, &other.w), 0); /* queued: both threads hold s's parts */
	wait_started(&s, 2);
	/* Data from the peer (a pipelined request) is not a hang-up. */
	assert_int_equal(write(sv[1], "GET / HTTP/1.1\r\n", 16), 16);
	sleep_ms(30);
	assert_int_equal(embd_work_cancelled(&s.w), 0);
	close(sv[1]);
	long ms = wait_done(&s, 2000);
	assert_true(ms >= 0 && ms < 100);
	assert_int_equal(embd_work_cancelled(&s.w), EMBD_ECANCELED);
	assert_int_equal(atomic_load(&s.cancelled), 2);
	assert_int_equal(atomic_load(&c.cancelled_total[0]), 1);
	/* The next work runs; it was not cancelled. */
	wait_started(&other, 1);
	atomic_store(&other.go, 1);
	assert_true(wait_done(&other, 2000) >= 0);
	assert_int_equal(embd_work_cancelled(&other.w), 0);
	close(sv[0]);
	embd_compute_destroy(&c);
}

/* A queued work whose client leaves is done at once, while the threads are still busy with another work. */
static void queued_hangup_is_done_at_once(void **state)
{
	(void)state;
	embd_compute c;
	assert_int_equal(embd_compute_start(&c, 1, 4, 0, 0), 0);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct spin busy, queued, deadline;
	spin_init(&busy, 1, -1, 0);
	spin_init(&queued, 1, sv[0], 0);
	spin_init(&deadline, 1, -1, embd_now_ns() + 30000000u);
	assert_int_equal(embd_compute_submit(&c, &busy.w), 0);
	assert_int_equal(embd_compute_submit(&c, &queued.w), 0);
	assert_int_equal(embd_compute_submit(&c, &deadline.w), 0);
	wait_started(&busy, 1);
	close(sv[1]);
	long ms = wait_done(&queued, 2000);
	assert_true(ms >= 0 && ms < 100);
	assert_true(wait_done(&deadline, 2000) >= 0);
	/* Neither ran a part: taken out of the queue and done by the watcher. */
	assert_int_equal(atomic_load(&queued.started), 0);
	assert_int_equal(atomic_load(&deadline.started), 0);
	assert_int_equal(embd_work_cancelled(&queued.w), EMBD_ECANCELED);
	assert_int_equal(embd_work_cancelled(&deadline.w), EMBD_EDEADLINE);
	assert_int_equal(embd_compute_admitted(&c), 1);
	assert_int_equal(atomic_load(&busy.done), 0);
	atomic_store(&busy.go, 1);
	assert_true(wait_done(&busy, 2000) >= 0);
	assert_int_equal(embd_work_cancelled(&busy.w), 0);
	assert_int_equal(atomic_load(&c.done_total), 3);
	close(sv[0]);
	embd_compute_destroy(&c);
}

/* A work past its deadline is cancelled, whether running or still queued. */
static void deadline_cancels(void **state)
{
	(void)state;
	embd_compute c;
	assert_int_equal(embd_compute_start(&c, 1, 4, 0, 0), 0);
	struct spin run, queued;
	uint64_t t0 = embd_now_ns();
	spin_init(&run, 1, -1, t0 + 50000000u);
	spin_init(&queued, 1, -1, t0 + 20000000u);
	assert_int_equal(embd_compute_submit(&c, &run.w), 0);
	assert_int_equal(embd_compute_submit(&c, &queued.w), 0);
	assert_true(wait_done(&run, 2000) >= 0);
	assert_true(wait_done(&queued, 2000) >= 0);
	uint64_t took = embd_now_ns() - t0;
	assert_true(took >= 50000000u && took < 1000000000u);
	assert_int_equal(embd_work_cancelled(&run.w), EMBD_EDEADLINE);
	assert_int_equal(embd_work_cancelled(&queued.w), EMBD_EDEADLINE);
	/* The queued one never ran: the watcher took it out of the queue at its deadline. */
	assert_int_equal(atomic_load(&queued.started), 0);
	assert_int_equal(atomic_load(&run.cancelled), 1);
	assert_int_equal(atomic_load(&c.cancelled_total[1]), 2);
	embd_compute_destroy(&c);
}

/* Stop cancels every admitted work (running or queued), calls each done once, and refuses new ones. */
static void stop_cancels_everything(void **state)
{
	(void)state;
	embd_compute c;
	assert_int_equal(embd_compute_start(&c, 2, 8, 0, 0), 0);
	struct spin s[4];
	for (int i = 0; i < 4; i++) {
		spin_init(&s[i], 2, -1, 0);
		assert_int_equal(embd_compute_submit(&c, &s[i].w), 0);
	}
	wait_started(&s[0], 2);
	uint64_t t0 = embd_now_ns();
	embd_compute_stop(&c);
	assert_true(embd_now_ns() - t0 < 500000000u);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(atomic_load(&s[i].done), 1);
		assert_int_equal(embd_work_cancelled(&s[i].w), EMBD_ESHUTDOWN);
		assert_int_equal(atomic_load(&s[i].returned), 2);
	}
	struct spin late;
	spin_init(&late, 1, -1, 0);
	assert_int_equal(embd_compute_submit(&c, &late.w), EMBD_ESHUTDOWN);
	embd_compute_destroy(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(parts_run_side_by_side),
	    cmocka_unit_test(queue_is_bounded),
	    cmocka_unit_test(bytes_are_bounded),
	    cmocka_unit_test(hangup_cancels),
	    cmocka_unit_test(queued_hangup_is_done_at_once),
	    cmocka_unit_test(deadline_cancels),
	    cmocka_unit_test(stop_cancels_everything),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
