/* The machine's physical limits, measured in the benchmark's own run: memcpy, random-row gather, loopback TCP. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile unsigned char sink;

/* Copy a 786 KB buffer (one 256-row response) again and again into a warm destination. */
static double memcpy_gbs(void)
{
	size_t n = 256 * 3072;
	unsigned char *a = malloc(n), *b = malloc(n);
	memset(a, 1, n);
	memset(b, 2, n);
	double t0 = now();
	int reps = 4000;
	for (int i = 0; i < reps; i++) {
		memcpy(b, a, n);
		a[i % n] = b[(i * 7) % n];
	}
	double dt = now() - t0;
	sink = b[n / 2];
	free(a);
	free(b);
	return (double)n * reps / dt / 1e9;
}

/* Gather 256 random rows of row_bytes from the (page-cached) matrix data into one buffer. */
static double gather_gbs(const char *path, size_t offset, size_t row_bytes)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0)
		return 0;
	const unsigned char *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return 0;
	size_t rows = ((size_t)st.st_size - offset) / row_bytes;
	unsigned char *dst = malloc(256 * row_bytes);
	uint64_t x = 88172645463325252u;
	int reps = 4000;
	double t0 = now();
	for (int r = 0; r < reps; r++) {
		for (int i = 0; i < 256; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(dst + (size_t)i * row_bytes, m + offset + (x % rows) * row_bytes, row_bytes);
		}
	}
	double dt = now() - t0;
	sink = dst[0];
	free(dst);
	munmap((void *)m, (size_t)st.st_size);
	return 256.0 * (double)row_bytes * reps / dt / 1e9;
}

static int listener;

static void *reader(void *arg)
{
	(void)arg;
	int c = accept(listener, NULL, NULL);
	static char buf[1 << 20];
	while (read(c, buf, sizeof buf) > 0)
		;
	close(c);
	return NULL;
}

/* One TCP stream over 127.0.0.1, 1 MiB writes, for a second. */
static double loopback_gbs(void)
{
	listener = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	if (bind(listener, (struct sockaddr *)&a, sizeof a) != 0 || listen(listener, 1) != 0 ||
	    getsockname(listener, (struct sockaddr *)&a, &len) != 0)
		return 0;
	pthread_t t;
	pthread_create(&t, NULL, reader, NULL);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(s, (struct sockaddr *)&a, sizeof a) != 0)
		return 0;
	static char buf[1 << 20];
	memset(buf, 3, sizeof buf);
	double t0 = now(), total = 0;
	while (now() - t0 < 1.0) {
		ssize_t w = write(s, buf, sizeof buf);
		if (w <= 0)
			break;
		total += (double)w;
	}
	double dt = now() - t0;
	close(s);
	pthread_join(t, NULL);
	close(listener);
	return total / dt / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: limits MATRIX.npy DATA_OFFSET ROW_BYTES\n");
		return 2;
	}
	printf("memcpy_GBps %.2f\n", memcpy_gbs());
	printf("gather256_GBps %.2f\n", gather_gbs(argv[1], strtoul(argv[2], NULL, 10), strtoul(argv[3], NULL, 10)));
	printf("loopback_tcp_GBps %.2f\n", loopback_gbs());
	return 0;
}
