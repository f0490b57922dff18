/* Unit tests of the large answers' turns: the limit, the line's order, the slice, stop, and suspend before resume. */
#include "fixture.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>

#include "clock.h"
#include "turns.h"

#define BIG  100 /* min_bytes of every test: answers this large take a turn */
#define HOUR 3600000000000ull

/* A caller's record with its waiter, as the server's request embeds one. */
struct rec {
	int id;
	embd_turn_waiter w;
};

/* What the callbacks saw, in order: +id for a suspend, -id for a resume. */
static int events[64];
static size_t nevents;
/* The turns under test, and how often a suspend came outside their lock or a resume inside it. */
static embd_turns *current;
static int misplaced;

/* Whether the turns' lock is held (these tests run on one thread: then by the caller). */
static int locked(void)
{
	if (pthread_mutex_trylock(&current->lock) != 0)
		return 1;
	pthread_mutex_unlock(&current->lock);
	return 0;
}

static void on_suspend(void *arg)
{
	misplaced += !locked();
	events[nevents++] = ((struct rec *)arg)->id;
}

static void on_resume(void *arg)
{
	misplaced += locked();
	events[nevents++] = -((struct rec *)arg)->id;
}

static void turns_new(embd_turns *t, unsigned limit, uint64_t slice_ns)
{
	nevents = 0;
	misplaced = 0;
	current = t;
	assert_int_equal(embd_turns_init(t, limit, BIG, slice_ns, on_suspend, on_resume), 0);
}

static void assert_events(const int *want, size_t n)
{
	assert_int_equal(misplaced, 0);
	assert_int_equal(nevents, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(events[i], want[i]);
}

static void recs_new(struct rec *r, int n)
{
	for (int i = 0; i < n; i++) {
		memset(&r[i], 0xa5, sizeof r[i]); /* take needs arg alone: the rest is the turns' to set */
		r[i].id = i + 1;
		r[i].w.arg = &r[i];
	}
}

/* At most limit large answers go at once; the next waits, suspended, and is counted. */
static void limit_respected(void **state)
{
	(void)state;
	embd_turns t;
	struct rec r[3];
	turns_new(&t, 2, HOUR);
	recs_new(r, 3);
	assert_int_equal(embd_turns_take(&t, &r[0].w, BIG), 1);
	assert_int_equal(embd_turns_take(&t, &r[1].w, 1 << 20), 1);
	assert_int_equal(nevents, 0);
	assert_int_equal(embd_turns_take(&t, &r[2].w, BIG), 0);
	assert_events((int[]){3}, 1);
	assert_int_equal(atomic_load(&t.waited), 1);
	assert_int_equal(atomic_load(&t.waiting), 1);
	/* One done: the one in line gets its turn, and nothing more moves. */
	embd_turns_give(&t, &r[1].w);
	assert_events((int[]){3, -3}, 2);
	assert_int_equal(atomic_load(&t.waiting), 0);
	embd_turns_give(&t, &r[0].w);
	embd_turns_give(&t, &r[2].w);
	assert_int_equal(nevents, 2);
	assert_int_equal(atomic_load(&t.waited), 1);
	embd_turns_destroy(&t);
}

/* The line is first come first served: each give passes the turn to the oldest in line, once. */
static void fifo_order_and_give_passes_on(void **state)
{
	(void)state;
	embd_turns t;
	struct rec r[4];
	turns_new(&t, 1, HOUR);
	recs_new(r, 4);
	assert_int_equal(embd_turns_take(&t, &r[0].w, BIG), 1);
	for (int i = 1; i < 4; i++)
		assert_int_equal(embd_turns_take(&t, &r[i].w, BIG), 0);
	assert_events((int[]){2, 3, 4}, 3);
	assert_int_equal(atomic_load(&t.waiting), 3);
	embd_turns_give(&t, &r[0].w);
	assert_events((int[]){2, 3, 4, -2}, 4);
	/* A turn that came free and went on is still the only one: a newcomer waits behind the line. */
	struct rec late[1];
	recs_new(late, 1);
	late[0].id = 5;
	assert_int_equal(embd_turns_take(&t, &late[0].w, BIG), 0);
	embd_turns_give(&t, &r[1].w);
	embd_turns_give(&t, &r[2].w);
	embd_turns_give(&t, &r[3].w);
	assert_events((int[]){2, 3, 4, -2, 5, -3, -4, -5}, 8);
	embd_turns_give(&t, &late[0].w);
	assert_int_equal(nevents, 8);
	assert_int_equal(atomic_load(&t.waiting), 0);
	assert_int_equal(atomic_load(&t.waited), 4);
	/* The turn is free again. */
	assert_int_equal(embd_turns_take(&t, &r[0].w, BIG), 1);
	assert_int_equal(nevents, 8);
	embd_turns_give(&t, &r[0].w);
	embd_turns_destroy(&t);
}

/* An answer dropped while in line leaves it (from the middle, the head or the tail) and is never resumed. */
static void give_in_line_leaves_it(void **state)
{
	(void)state;
	embd_turns t;
	struct rec r[6];
	turns_new(&t, 1, HOUR);
	recs_new(r, 6);
	assert_int_equal(embd_turns_take(&t, &r[0].w, BIG), 1);
	for (int i = 1; i < 5; i++)
		assert_int_equal(embd_turns_take(&t, &r[i].w, BIG), 0);
	embd_turns_give(&t, &r[2].w); /* the middle */
	embd_turns_give(&t, &r[4].w); /* the tail */
	embd_turns_give(&t, &r[1].w); /* the head */
	assert_int_equal(atomic_load(&t.waiting), 1);
	assert_int_equal(nevents, 4);
	/* The tail moved back: a newcomer goes behind the one left, not behind a gone one. */
	assert_int_equal(embd_turns_take(&t, &r[5].w, BIG), 0);
	embd_turns_give(&t, &r[0].w);
	embd_turns_give(&t, &r[3].w);
	embd_turns_give(&t, &r[5].w);
	assert_events((int[]){2, 3, 4, 5, 6, -4, -6}, 7);
	assert_int_equal(atomic_load(&t.waiting), 0);
	/* The last one left too: the line is empty, and the turn free. */
	assert_int_equal(embd_turns_take(&t, &r[1].w, BIG), 1);
	assert_int_equal(embd_turns_take(&t, &r[2].w, BIG), 0);
	embd_turns_give(&t, &r[2].w);
	embd_turns_give(&t, &r[1].w);
	assert_int_equal(embd_turns_take(&t, &r[3].w, BIG), 1);
	assert_int_equal(nevents, 8);
	embd_turns_give(&t, &r[3].w);
	embd_turns_destroy(&t);
}

/* A turn held past the slice goes to the next in line; its holder sends on turnless, and its give passes nothing. */
static void sweep_passes_a_turn_held_past_the_slice(void **state)
{
	(void)state;
	embd_turns t;
	struct rec r[3];
	turns_new(&t, 1, HOUR);
	recs_new(r, 3);
	uint64_t before = embd_now_ns();
	assert_int_equal(embd_turns_take(&t, &r[0].w, BIG), 1);
	uint64_t after = embd_now_ns();
	/* Nobody in line: a turn held however long stays. */
	embd_turns_sweep(&t, after + 2 * HOUR);
	assert_int_equal(embd_turns_take(&t, &r[1].w, BIG), 0);
	assert_int_equal(embd_turns_take(&t, &r[2].w, BIG), 0);
	/* Within the slice (and a clock read before the turn began): it stays. */
	embd_turns_sweep(&t, before);
	embd_turns_sweep(&t, after);
	embd_turns_sweep(&t, before + HOUR);
	assert_events((int[]){2, 3}, 2);
	/* Past it: the first in line gets it, and only one turn moves. */
	embd_turns_sweep(&t, after + HOUR + 1);
	assert_events((int[]){2, 3, -2}, 3);
	assert_int_equal(atomic_load(&t.waiting), 1);
	/* The old holder's give passes nothing on: the turn is no longer its. */
	embd_turns_give(&t, &r[0].w);
	assert_int_equal(nevents, 3);
	/* The new holder's slice started when it got the turn; a turn held exactly the slice stays. */
	embd_turns_sweep(&t, after + 2 * HOUR + 1);
	assert_int_equal(nevents, 3);
	embd_turns_sweep(&t, after + 2 * HOUR + 2);
	assert_events((int[]){2, 3, -2, -3}, 4);
	embd_turns_give(&t, &r[1].w);
	embd_turns_give(&t, &r[2].w);
	assert_int_equal(atomic_load(&t.waiting), 0);
	embd_turns_destroy(&t);
}

/* Stop resumes every one in line, in order; from then on nothing waits. */
static void stop_releases_everyone(void **state)
{
	(void)state;
	embd_turns t;
	struct rec r[5];
	turns_new(&t, 1, HOUR);
	recs_new(r, 5);
	assert_int_equal(embd_turns_take(&t, &r[0].w, BIG), 1);
	assert_int_equal(embd_turns_take(&t, &r[1].w, BIG), 0);
	assert_int_equal(embd_turns_take(&t, &r[2].w, BIG), 0);
	embd_turns_stop(&t);
	assert_events((int[]){2, 3, -2, -3}, 4);
	assert_int_equal(atomic_load(&t.waiting), 0);
	assert_int_equal(embd_turns_take(&t, &r[3].w, BIG), 1);
	assert_int_equal(embd_turns_take(&t, &r[4].w, BIG), 1);
	for (int i = 4; i >= 0; i--)
		embd_turns_give(&t, &r[i].w);
	embd_turns_sweep(&t, embd_now_ns() + 2 * HOUR);
	assert_int_equal(nevents, 4);
	assert_int_equal(atomic_load(&t.waited), 2);
	assert_int_equal(atomic_load(&t.waiting), 0);
	embd_turns_destroy(&t);
}

/* limit 0: no turns; every answer goes at once and nothing is ever suspended, resumed or counted. */
static void limit_zero_is_off(void **state)
{
	(void)state;
	embd_turns t;
	struct rec r[4];
	turns_new(&t, 0, HOUR);
	recs_new(r, 4);
	assert_false(embd_turns_large(&t, UINT64_MAX));
	for (int i = 0; i < 4; i++)
		assert_int_equal(embd_turns_take(&t, &r[i].w, 1 << 30), 1);
	embd_turns_sweep(&t, embd_now_ns() + 2 * HOUR);
	embd_turns_give(&t, &r[0].w);
	embd_turns_stop(&t);
	assert_int_equal(nevents, 0);
	assert_int_equal(atomic_load(&t.waited), 0);
	embd_turns_destroy(&t);
}

/* Answers under min_bytes never wait, whatever the line, and hold no turn. */
static void small_answers_never_wait(void **state)
{
	(void)state;
	embd_turns t;
	struct rec r[4];
	turns_new(&t, 1, HOUR);
	recs_new(r, 4);
	assert_false(embd_turns_large(&t, BIG - 1));
	assert_true(embd_turns_large(&t, BIG));
	assert_int_equal(embd_turns_take(&t, &r[0].w, BIG), 1);
	assert_int_equal(embd_turns_take(&t, &r[1].w, BIG), 0);
	assert_int_equal(embd_turns_take(&t, &r[2].w, BIG - 1), 1);
	assert_int_equal(embd_turns_take(&t, &r[3].w, 0), 1);
	assert_events((int[]){2}, 1);
	assert_int_equal(atomic_load(&t.waiting), 1);
	embd_turns_give(&t, &r[0].w);
	assert_events((int[]){2, -2}, 2);
	embd_turns_give(&t, &r[1].w);
	embd_turns_destroy(&t);
}

/*
 * Threads taking and giving at once: never more than limit hold a turn, and
 * every resume comes after its suspend (suspend runs under the lock, before
 * the waiter is in line). Under SANITIZE=thread this is the module's race check.
 */
#define THREADS 6
#define ROUNDS  300
#define LIMIT   2

struct worker {
	embd_turns *t;
	atomic_int *active, *max_active, *bad;
	atomic_int state; /* 0: running or holding; 1: suspended; 2: resumed */
	sem_t woken;
	embd_turn_waiter w;
};

static void mt_suspend(void *arg)
{
	struct worker *k = arg;
	int want = 0;
	if (!atomic_compare_exchange_strong(&k->state, &want, 1))
		atomic_fetch_add(k->bad, 1);
}

static void mt_resume(void *arg)
{
	struct worker *k = arg;
	int want = 1;
	if (!atomic_compare_exchange_strong(&k->state, &want, 2))
		atomic_fetch_add(k->bad, 1);
	sem_post(&k->woken);
}

static void *mt_run(void *arg)
{
	struct worker *k = arg;
	for (int i = 0; i < ROUNDS; i++) {
		k->w.arg = k;
		if (embd_turns_take(k->t, &k->w, BIG) == 0) {
			while (sem_wait(&k->woken) != 0)
				;
			atomic_store(&k->state, 0);
		}
		int n = atomic_fetch_add(k->active, 1) + 1;
		int m = atomic_load(k->max_active);
		while (n > m && !atomic_compare_exchange_weak(k->max_active, &m, n))
			;
		sched_yield();
		atomic_fetch_sub(k->active, 1);
		embd_turns_give(k->t, &k->w);
	}
	return NULL;
}

static void threads_keep_the_limit_and_resume_after_suspend(void **state)
{
	(void)state;
	embd_turns t;
	assert_int_equal(embd_turns_init(&t, LIMIT, BIG, HOUR, mt_suspend, mt_resume), 0);
	atomic_int active = 0, max_active = 0, bad = 0;
	struct worker k[THREADS];
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++) {
		k[i] = (struct worker){.t = &t, .active = &active, .max_active = &max_active, .bad = &bad};
		atomic_init(&k[i].state, 0);
		assert_int_equal(sem_init(&k[i].woken, 0, 0), 0);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, mt_run, &k[i]), 0);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	assert_int_equal(atomic_load(&bad), 0);
	assert_true(atomic_load(&max_active) >= 1 && atomic_load(&max_active) <= LIMIT);
	assert_int_equal(atomic_load(&t.waiting), 0);
	assert_true(atomic_load(&t.waited) <= (unsigned long long)THREADS * ROUNDS);
	for (int i = 0; i < THREADS; i++)
		sem_destroy(&k[i].woken);
	embd_turns_destroy(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(limit_respected),
	    cmocka_unit_test(fifo_order_and_give_passes_on),
	    cmocka_unit_test(give_in_line_leaves_it),
	    cmocka_unit_test(sweep_passes_a_turn_held_past_the_slice),
	    cmocka_unit_test(stop_releases_everyone),
	    cmocka_unit_test(limit_zero_is_off),
	    cmocka_unit_test(small_answers_never_wait),
	    cmocka_unit_test(threads_keep_the_limit_and_resume_after_suspend),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
