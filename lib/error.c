/* The error table's look-ups and detailed error messages. */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct entry {
	int value;
	int status;
	const char *code;
	const char *message;
};

static const struct entry entries[] = {
#define EMBD_X_ENTRY(name, value, status, code, message) {value, status, code, message},
    EMBD_ERRORS(EMBD_X_ENTRY)
#undef EMBD_X_ENTRY
};

static const struct entry *find(int err)
{
	int value = -err - EMBD_EBASE;
	for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
		if (entries[i].value == value)
			return &entries[i];
	return NULL;
}

const char *embd_strerror(int err)
{
	const struct entry *e = find(err);
	if (e != NULL)
		return e->message;
	if (err < 0 && err > -EMBD_EBASE)
		return strerror(-err);
	return "unknown error";
}

const char *embd_error_code(int err)
{
	const struct entry *e = find(err);
	return e != NULL ? e->code : "internal";
}

int embd_error_status(int err)
{
	const struct entry *e = find(err);
	if (e != NULL)
		return e->status;
	return err == -ENOMEM ? 503 : 500;
}

int embd_err_set(embd_err *e, int code, const char *fmt, ...)
{
	if (e != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(e->msg, sizeof e->msg, fmt, ap);
		va_end(ap);
	}
	return code;
}
