/* embd's command line: serve, info, convert, --help, --version. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "convert.h"
#include "encode.h"
#include "json.h"
#include "log.h"
#include "matrix.h"
#include "ops.h"
#include "reload.h"
#include "safetensors.h"
#include "server.h"

static void usage(FILE *out)
{
	fprintf(out,
	        "embd %s: serves the rows of one embedding matrix over HTTP, zero-copy where it can.\n"
	        "\n"
	        "usage:\n"
	        "  embd serve [FILE] [--config FILE] [OPTIONS]   serve FILE (.npy, .safetensors, GloVe/word2vec text,\n"
	        "                                                word2vec .bin, raw); no FILE: the demo matrix\n"
	        "  embd info FILE [--vocab F --tensor T ...]     a matrix file's format, shape, dtype, tensors and\n"
	        "                                                vocabulary, from its header (the rows are not read)\n"
	        "  embd convert IN -o OUT.npy [OPTIONS]          GloVe/word2vec/fastText file to .npy + vocabulary\n"
	        "                                                (see embd convert --help)\n"
	        "  embd --version | --help\n"
	        "\n"
	        "serve options (each is also a key of the JSON config file; flags win over the file):\n"
	        "  --config FILE                          read the configuration from FILE (see config/embd.json)\n"
	        "  --print-config                         print the effective configuration as JSON and exit\n",
	        EMBD_VERSION);
	embd_config_help(out);
	fprintf(out, "\nSizes take a suffix: 64MiB, 512K, 1G. Booleans: --populate or --populate=false.\n");
}

/* Apply argv (after the subcommand) to cfg. Returns 0, 1 (exit 0: --help/--print-config) or -1. */
static int parse_args(int argc, char **argv, embd_config *cfg, int *print_config)
{
	char msg[512];
	/* The config file first, so that every other flag overrides it wherever it stands. */
	for (int i = 0; i < argc; i++) {
		const char *path = NULL;
		// NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker): argv[i] is set for every i < argc
		if (strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "embd: --config needs a file\n");
				return -1;
			}
			path = argv[i + 1];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			path = argv[i] + 9;
		}
		if (path != NULL && embd_config_load(cfg, path, msg, sizeof msg) != 0) {
			fprintf(stderr, "embd: %s\n", msg);
			return -1;
		}
	}
	int positional = 0;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 1;
		}
		if (strcmp(a, "--print-config") == 0) {
			*print_config = 1;
			continue;
		}
		if (strcmp(a, "--config") == 0) {
			i++;
			continue;
		}
		if (strncmp(a, "--config=", 9) == 0)
			continue;
		if (strncmp(a, "--", 2) != 0) {
			if (positional++ != 0) {
				fprintf(stderr, "embd: one matrix file at a time ('%s' is a second one)\n", a);
				return -1;
			}
			if (embd_config_set(cfg, "matrix.path", a, msg, sizeof msg) != 0) {
				fprintf(stderr, "embd: %s\n", msg);
				return -1;
			}
			continue;
		}
		char name[128];
		const char *value = NULL;
		const char *eq = strchr(a + 2, '=');
		snprintf(name, sizeof name, "%.*s", (int)(eq ? (size_t)(eq - a - 2) : strlen(a + 2)), a + 2);
		int is_bool = 0;
		if (!embd_config_known(name, &is_bool)) {
			fprintf(stderr, "embd: unknown option '%s' (see embd serve --help)\n", a);
			return -1;
		}
		if (eq != NULL)
			value = eq + 1;
		else if (is_bool)
			value = "true";
		else if (i + 1 < argc)
			value = argv[++i];
		else {
			fprintf(stderr, "embd: %s needs a value\n", a);
			return -1;
		}
		if (embd_config_set(cfg, name, value, msg, sizeof msg) != 0) {
			fprintf(stderr, "embd: %s\n", msg);
			return -1;
		}
	}
	return 0;
}

/* The admin token: the first line of the file, which must not be empty. 0, or -1 with a message printed. */
static int read_token(const char *path, char *out, size_t cap)
{
	FILE *f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "embd: admin.token_file: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fgets(out, (int)cap, f) == NULL)
		out[0] = '\0';
	fclose(f);
	out[strcspn(out, "\r\n")] = '\0';
	if (strlen(out) < 16) {
		fprintf(stderr, "embd: admin.token_file: %s: the token must be at least 16 characters\n", path);
		return -1;
	}
	return 0;
}

/*
 * Signals. Every thread may take SIGHUP, SIGUSR1, SIGTERM or SIGINT, including threads
 * we did not create (OpenBLAS starts its workers in a constructor, before
 * main, with every signal unblocked), so none of them may be left at the
 * default action, which kills the process. A handler notes the signal and
 * writes a byte to a self-pipe, whichever thread it runs on; the main thread
 * polls the pipe and acts, from the bind on, the first load included.
 * SIGHUP reloads the matrix; SIGUSR1 reopens the log file (after logrotate
 * moved it), as nginx does on SIGUSR1.
 */
static atomic_int caught_hup, caught_usr1, caught_stop;
static int sig_pipe[2] = {-1, -1};

static void wake_main(void)
{
	char b = 0;
	ssize_t n = write(sig_pipe[1], &b, 1); /* non-blocking: a full pipe already has a wake-up in it */
	(void)n;
}

static void on_signal(int sig)
{
	int saved = errno; /* the interrupted code may be about to read it */
	if (sig == SIGHUP)
		atomic_store(&caught_hup, 1);
	else if (sig == SIGUSR1)
		atomic_store(&caught_usr1, 1);
	else
		atomic_store(&caught_stop, sig);
	wake_main();
	errno = saved;
}

static const int handled_signals[] = {SIGHUP, SIGUSR1, SIGTERM, SIGINT};

/* The handlers and their pipe; 0, or -1 with a message printed. */
static int signals_install(void)
{
	if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
		fprintf(stderr, "embd: pipe: %s\n", strerror(errno));
		return -1;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART; /* the other threads' system calls carry on */
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof handled_signals / sizeof handled_signals[0]; i++)
		sigaction(handled_signals[i], &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return 0;
}

/* Block (how SIG_BLOCK) or unblock our signals in this thread; threads it starts meanwhile inherit the mask. */
static void signals_mask(int how)
{
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < sizeof handled_signals / sizeof handled_signals[0]; i++)
		sigaddset(&set, handled_signals[i]);
	pthread_sigmask(how, &set, NULL);
}

/*
 * The first load, on a thread of its own: the main thread stays in serve_loop
 * from the bind on, so the request deadlines and the signals are enforced
 * while a large text file parses, as they are once serving.
 */
struct first_load {
	embd_matrix_spec spec; /* its strings point into the server's configuration, which outlives the thread */
	embd_gen_list *live;
	pthread_t thread;
	atomic_int done; /* set last, with release order: rc, g, e and t1 are then the thread's final word */
	int rc;
	embd_gen *g;
	embd_err e;
	uint64_t t0, t1;
};

static void *first_load_run(void *arg)
{
	struct first_load *f = arg;
	f->rc = embd_gen_open(&f->spec, 1, f->live, &f->g, &f->e);
	f->t1 = embd_now_ns();
	atomic_store(&f->done, 1);
	wake_main();
	return NULL;
}

/* A failed SIGUSR1 reopen is said where an operator looks (standard error too, as the old file may be gone). */
static void reopen_log(embd_server *s)
{
	/* The line before goes to the old file (logrotate's copy), the one after to the new one. */
	embd_log(EMBD_LOG_NOTICE, "SIGUSR1: reopening the log file");
	int rc = embd_log_reopen();
	if (rc == 0) {
		embd_log(EMBD_LOG_NOTICE, "SIGUSR1: log file reopened");
		return;
	}
	atomic_fetch_add(&s->metrics.log_reopen_failures, 1);
	embd_log(EMBD_LOG_ERROR, "SIGUSR1: cannot reopen %s: %s; still writing to the old file", s->cfg.log_file,
	         strerror(-rc));
	fprintf(stderr, "embd: SIGUSR1: cannot reopen %s: %s; still writing to the old file\n", s->cfg.log_file,
	        strerror(-rc));
}

/*
 * The main thread's loop: act on signals, and between them enforce the request
 * deadline every 250 ms. It never loads a matrix (the first load has its
 * thread, reloads the reload thread), so neither the sweep nor SIGTERM ever
 * waits for a file. With first (the first load still running), it returns 0
 * once that load has ended; a SIGHUP meanwhile sets *hup_after, to reload once
 * serving. Otherwise, or on SIGTERM and SIGINT, it returns the stop signal.
 */
static int serve_loop(embd_server *s, struct first_load *first, int *hup_after)
{
	const uint64_t tick = 250000000u;
	uint64_t next_sweep = embd_now_ns() + tick;
	for (;;) {
		uint64_t now = embd_now_ns();
		if (now >= next_sweep) {
			embd_http_sweep(s);
			next_sweep = now + tick;
			continue;
		}
		struct pollfd p = {sig_pipe[0], POLLIN, 0};
		int timeout_ms = (int)((next_sweep - now + 999999) / 1000000);
		if (poll(&p, 1, timeout_ms) > 0) {
			char buf[64];
			while (read(sig_pipe[0], buf, sizeof buf) > 0)
				;
		}
		int stop = atomic_exchange(&caught_stop, 0);
		if (stop != 0)
			return stop;
		if (atomic_exchange(&caught_usr1, 0))
			reopen_log(s);
		if (atomic_exchange(&caught_hup, 0)) {
			if (first != NULL) {
				/* The file may have changed since the load began: load it again once this one is
				 * served. */
				embd_log(EMBD_LOG_NOTICE,
				         "SIGHUP: the first load is still running; reloading once it is served");
				*hup_after = 1;
			} else {
				/* Any number of SIGHUPs during a load make at most one more load. */
				embd_log(EMBD_LOG_NOTICE, "SIGHUP: reloading");
				embd_reloader_signal(&s->reloader);
			}
		}
		if (first != NULL && atomic_load(&first->done))
			return 0;
	}
}

static int cmd_serve(int argc, char **argv)
{
	static embd_server srv; /* large; lives for the whole process */
	embd_server *s = &srv;
	int print_config = 0;
	embd_config_defaults(&s->cfg);
	int rc = parse_args(argc, argv, &s->cfg, &print_config);
	if (rc != 0)
		return rc < 0 ? 2 : 0;
	if (print_config) {
		embd_config_dump(&s->cfg, stdout);
		return 0;
	}
	enum embd_log_level level;
	if (embd_log_level_parse(s->cfg.log_level, &level) != 0) {
		fprintf(stderr, "embd: log.level: '%s' is not error, warn, notice or info\n", s->cfg.log_level);
		return 2;
	}
	embd_log_set_level(level);
	if (embd_log_open(s->cfg.log_file) != 0) {
		fprintf(stderr, "embd: log.file: %s: %s\n", s->cfg.log_file, strerror(errno));
		return 2;
	}
	embd_matrix_spec spec;
	char msg[512];
	if (embd_spec_from_config(&s->cfg, &spec, msg, sizeof msg) != 0) {
		fprintf(stderr, "embd: %s\n", msg);
		return 2;
	}
	if (s->cfg.admin_token_file[0] != '\0' &&
	    read_token(s->cfg.admin_token_file, s->admin_token, sizeof s->admin_token) != 0)
		return 2;
	/* Before the bind: from then on the main thread acts on every signal, during the first load too. */
	if (signals_install() != 0)
		return 1;
	embd_metrics_init(&s->metrics);
	/* No generation until the table has loaded: meanwhile every request is answered 503 loading. */
	embd_gen_current_init(&s->current, NULL);
	embd_budget_init(&s->budget, (uint64_t)s->cfg.inflight_bytes);
	embd_pool_init(&s->pool, (uint64_t)s->cfg.pool_bytes);
	s->plan.iov_max_segments = (size_t)s->cfg.iov_max_segments;
	s->plan.iov_min_run_bytes = (size_t)s->cfg.iov_min_run_bytes;
	embd_ops_set_threads(1);

	/*
	 * Threads we start (libmicrohttpd's, the reload thread) block our signals,
	 * so that the handler interrupts only this thread's poll (or a library's
	 * thread, which the handler copes with too).
	 */
	signals_mask(SIG_BLOCK);
	/*
	 * The reloader first, with the spec the first generation is being loaded
	 * with: no request reaches it before that generation is current (until
	 * then every request is answered 503 loading), and a SIGHUP is acted on
	 * only once serving.
	 */
	int err = embd_reloader_start(&s->reloader, s, 1, &spec);
	if (err != 0) {
		fprintf(stderr, "embd: cannot start the reload thread: %s\n", strerror(err));
		embd_gen_current_destroy(&s->current);
		return 1;
	}
	/* The compute pool before the daemon listens: a vector operation may come with the first request. */
	err = embd_compute_start(&s->compute, (unsigned)s->cfg.compute_threads, (size_t)s->cfg.compute_queue,
	                         (uint64_t)s->cfg.compute_inflight_bytes, (int)s->cfg.compute_nice);
	if (err != 0) {
		fprintf(stderr, "embd: cannot start the compute pool: %s\n", strerror(-err));
		(void)embd_reloader_stop(&s->reloader, embd_now_ns());
		embd_gen_current_destroy(&s->current);
		return 1;
	}
	/*
	 * Bind first, load after: a port in use is one clear error at once, not
	 * one found after a table took seconds to load, and a balancer's
	 * readiness check sees 503 loading while it loads.
	 */
	if (embd_http_start(s, msg, sizeof msg) != 0) {
		fprintf(stderr, "embd: %s\n", msg);
		embd_compute_destroy(&s->compute);
		(void)embd_reloader_stop(&s->reloader, embd_now_ns()); /* idle: nothing to abandon */
		embd_gen_current_destroy(&s->current);
		return 1;
	}
	const char *addr = s->cfg.listen_address;
	int v6 = strchr(addr, ':') != NULL;
	/* listen.unix's socket, named beside the port wherever the port is. */
	char also[340] = "";
	if (s->cfg.listen_unix[0] != '\0') {
		char shown[320];
		embd_log_safe(shown, sizeof shown, s->cfg.listen_unix);
		snprintf(also, sizeof also, " and unix:%s", shown);
	}
	/* The real port at once (with --port 0 nothing else names it until the table has loaded). */
	embd_log(EMBD_LOG_NOTICE, "embd %s: listening on http://%s%s%s:%u/%s, loading %s", EMBD_VERSION, v6 ? "[" : "",
	         addr, v6 ? "]" : "", s->port, also,
	         s->cfg.matrix_path[0] != '\0' ? s->cfg.matrix_path : "the demo matrix");
	/* The load thread inherits the blocked mask: a signal interrupts the main thread's poll, not the parse. */
	static struct first_load first; /* outlives cmd_serve if a stop leaves the load running */
	first.spec = spec;
	first.live = &s->metrics.generations_live;
	first.t0 = embd_now_ns();
	err = pthread_create(&first.thread, NULL, first_load_run, &first);
	signals_mask(SIG_UNBLOCK);
	if (err != 0) {
		fprintf(stderr, "embd: cannot start the load thread: %s\n", strerror(err));
		(void)embd_http_stop(s, 0);
		embd_compute_destroy(&s->compute);
		embd_gen_current_destroy(&s->current);
		embd_pool_destroy(&s->pool);
		return 1;
	}
	int hup_after = 0;
	int sig = serve_loop(s, &first, &hup_after);
	if (sig != 0) {
		/*
		 * Stopped while the first table loads: a parse cannot be cancelled, so
		 * the daemon stops answering (503 loading meanwhile) and exits without
		 * waiting for it.
		 */
		const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
		embd_log(EMBD_LOG_NOTICE, "%s: stopping during the first load (not waiting for it)", name);
		int abandoned = embd_http_stop(s, (unsigned)s->cfg.shutdown_s) != 0;
		embd_compute_destroy(&s->compute);
		uint64_t left = embd_budget_inflight(&s->budget);
		embd_log(EMBD_LOG_NOTICE, "stopped during the first load; in-flight accounted bytes %" PRIu64 "%s",
		         left, abandoned ? ", a reload abandoned" : "");
		/* The load thread still uses the server's state: leave without tearing it down (exit would, at exit).
		 */
		_exit(left == 0 && !abandoned ? 0 : 1);
	}
	pthread_join(first.thread, NULL);
	if (first.rc != 0) {
		fprintf(stderr, "embd: %s\n", first.e.msg);
		(void)embd_http_stop(s, 0); /* answers 503 loading to whoever asked meanwhile, and stops the reloader */
		embd_compute_destroy(&s->compute);
		embd_gen_current_destroy(&s->current);
		embd_pool_destroy(&s->pool);
		return first.rc == EMBD_ENOTAPPLICABLE ? 2 : 1; /* a flag that does not apply is a usage error */
	}
	embd_gen *g = first.g;
	/* Our own reference for the start-up line: once serving, a reload may retire the first generation. */
	embd_gen *loaded = embd_gen_retain(g);
	embd_gen_current_swap(&s->current, g);
	atomic_store(&s->metrics.generation, 1);
	const embd_matrix_info *info = embd_gen_matrix(loaded);
	const embd_vocab *v = embd_gen_vocab(loaded);
	/*
	 * Each time under its own name, as /v1/info names it: the matrix's (load_ms) and the vocabulary's
	 * (vocabulary.build_ms) apart, then the whole load, which a vocabulary file can make far longer than
	 * the mapping.
	 */
	char words[160] = "no vocabulary";
	if (v != NULL)
		snprintf(words, sizeof words, "vocabulary of %" PRIu64 " tokens, %zu bytes, built in %.3f ms",
		         embd_vocab_size(v), embd_vocab_bytes(v), (double)embd_vocab_build_ns(v) / 1e6);
	embd_log(EMBD_LOG_NOTICE,
	         "embd %s: serving %s (%s, %" PRIu64 " x %" PRIu64 " %s, %" PRIu64 " bytes, matrix %s in %.3f ms, "
	         "%s, loaded in %.3f ms in all) on http://%s%s%s:%u/%s",
	         EMBD_VERSION, info->source, embd_format_name(info->format), info->rows, info->dim,
	         embd_dtype_name(info->dtype), info->data_bytes, info->heap_bytes != 0 ? "parsed" : "mapped",
	         (double)info->load_ns / 1e6, words, (double)(first.t1 - first.t0) / 1e6, v6 ? "[" : "", addr,
	         v6 ? "]" : "", s->port, also);
	embd_gen_release(loaded);
	if (hup_after) {
		embd_log(EMBD_LOG_NOTICE, "SIGHUP: reloading");
		embd_reloader_signal(&s->reloader);
	}
	sig = serve_loop(s, NULL, NULL);
	embd_log(EMBD_LOG_NOTICE, "%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	int abandoned = embd_http_stop(s, (unsigned)s->cfg.shutdown_s) != 0;
	embd_compute_destroy(&s->compute);
	embd_gen_current_destroy(&s->current);
	uint64_t left = embd_budget_inflight(&s->budget);
	embd_pool_destroy(&s->pool);
	embd_log(EMBD_LOG_NOTICE, "stopped; in-flight accounted bytes %" PRIu64 ", generations live %ld%s", left,
	         embd_gen_list_live(&s->metrics.generations_live), abandoned ? ", a reload abandoned" : "");
	return left == 0 && !abandoned ? 0 : 1;
}

/* Every tensor of a safetensors file, from its header alone: name, dtype, shape. */
static void print_tensors(const char *path)
{
	embd_safetensors *st;
	embd_err e;
	if (embd_safetensors_read(path, &st, &e) != 0) {
		fprintf(stderr, "embd: %s\n", e.msg);
		return;
	}
	printf("tensors: %zu\n", st->ntensors);
	for (size_t k = 0; k < st->ntensors; k++) {
		char shape[256];
		embd_safetensors_shape_text(shape, sizeof shape, &st->tensors[k]);
		printf("  %s %s %s\n", st->tensors[k].name, st->tensors[k].dtype, shape);
	}
	embd_safetensors_free(st);
}

/* The vocabulary: the words the file carries (the first few, looked at), or the vocabulary file's. */
static int print_vocab(embd_matrix *m, const char *vocab_path)
{
	const embd_matrix_info *i = embd_matrix_info_get(m);
	embd_vocab *v = embd_matrix_take_vocab(m);
	embd_err e;
	if (v != NULL && vocab_path[0] != '\0') {
		fprintf(stderr, "embd: %s: a %s file names its rows itself; --vocab is for npy, safetensors and raw\n",
		        i->source, embd_format_name(i->format));
		embd_vocab_free(v);
		return 1;
	}
	if (v != NULL) {
		printf("vocabulary: %" PRIu64 " tokens, the file's own words\n", i->rows);
	} else if (vocab_path[0] != '\0') {
		if (embd_vocab_open(vocab_path, i->rows, &v, &e) != 0) {
			fprintf(stderr, "embd: %s\n", e.msg);
			return 1;
		}
		printf("vocabulary: %" PRIu64 " tokens from %s, %zu bytes held when served\n", embd_vocab_size(v),
		       vocab_path, embd_vocab_bytes(v));
	} else {
		printf("vocabulary: none (serve with --vocab FILE to ask by token)\n");
		return 0;
	}
	printf("first tokens:");
	for (uint64_t k = 0; k < embd_vocab_size(v) && k < 8; k++) {
		char clean[256];
		embd_utf8_sanitize(clean, sizeof clean, embd_vocab_token(v, k, NULL));
		printf("%s %s", k ? "," : "", clean);
	}
	printf("\n");
	embd_vocab_free(v);
	return 0;
}

static int cmd_info(int argc, char **argv)
{
	embd_config cfg;
	int print_config = 0;
	embd_config_defaults(&cfg);
	int rc = parse_args(argc, argv, &cfg, &print_config);
	if (rc != 0)
		return rc < 0 ? 2 : 0;
	embd_matrix_spec spec;
	char msg[512];
	if (embd_spec_from_config(&cfg, &spec, msg, sizeof msg) != 0) {
		fprintf(stderr, "embd: %s\n", msg);
		return 2;
	}
	if (cfg.matrix_path[0] == '\0' && spec.format != EMBD_FORMAT_DEMO) {
		fprintf(stderr, "embd info: name a matrix file\n");
		return 2;
	}
	spec.header_only = 1; /* the rows are not read: a text file is looked at, not parsed */
	embd_matrix *m;
	embd_err e;
	if ((rc = embd_matrix_open(&spec, &m, &e)) != 0) {
		if (rc == EMBD_ENOTAPPLICABLE) { /* a flag that does not apply is a usage error */
			fprintf(stderr, "embd: %s\n", e.msg);
			return 2;
		}
		/* A model file with many 2-D tensors and no --tensor: its tensors are what the user needs to see. */
		embd_safetensors *st;
		embd_err se;
		if (rc == EMBD_ECONFIG && spec.tensor[0] == '\0' &&
		    embd_safetensors_read(cfg.matrix_path, &st, &se) == 0) {
			embd_safetensors_free(st);
			printf("source: %s\nformat: safetensors\n", cfg.matrix_path);
			print_tensors(cfg.matrix_path);
			printf("tensor: none picked (several 2-D tensors): name one with --tensor NAME\n");
			return 0;
		}
		fprintf(stderr, "embd: %s\n", e.msg);
		return 1;
	}
	const embd_matrix_info *i = embd_matrix_info_get(m);
	printf("source: %s\nformat: %s\nrows: %" PRIu64 "\ndim: %" PRIu64 "\ndtype: %s\nrow_bytes: %zu\n"
	       "data_bytes: %" PRIu64 "\nfile_bytes: %" PRIu64 "\n",
	       i->source, embd_format_name(i->format), i->rows, i->dim, embd_dtype_name(i->dtype), i->row_bytes,
	       i->data_bytes, i->file_bytes);
	if (i->format == EMBD_FORMAT_SAFETENSORS)
		print_tensors(i->source);
	rc = print_vocab(m, cfg.matrix_vocab);
	embd_matrix_close(m);
	return rc;
}

int main(int argc, char **argv)
{
	embd_json_init(); /* before any jansson value exists: each is freed by the functions that made it */
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	/*
	 * SIGUSR1 is the log-reopening signal a logrotate rule sends to the
	 * server, by a name (pidof embd) that also finds `embd info` and `embd
	 * convert`: they have no log to reopen, and must not die of it (the
	 * default action). `embd serve` installs its handler over this.
	 */
	signal(SIGUSR1, SIG_IGN);
	const char *cmd = argv[1];
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
		printf("embd %s\n", EMBD_VERSION);
		return 0;
	}
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(argc - 2, argv + 2);
	if (strcmp(cmd, "info") == 0)
		return cmd_info(argc - 2, argv + 2);
	if (strcmp(cmd, "convert") == 0)
		return embd_cmd_convert(argc - 2, argv + 2);
	fprintf(stderr, "embd: unknown command '%s'\n\n", cmd);
	usage(stderr);
	return 2;
}
