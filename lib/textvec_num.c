/* The numbers of text vector files, read as gensim reads them: np.float32(float(field)) (see textvec.c). */
#include "textvec.h"

#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int embd_tv_line_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* The whitespace float() strips inside a field: a space cannot be there (it separates fields). */
static int field_ws(unsigned char c)
{
	return c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                       1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int ieq(const unsigned char *s, size_t n, const char *lit)
{
	if (strlen(lit) != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		if (c != (unsigned char)lit[i])
			return 0;
	}
	return 1;
}

static float f32_from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/*
 * The correctly rounded double of a validated decimal [s, e) (sign, digits,
 * underscores, '.', exponent) through strtod_l in the C locale: the slow path,
 * for more than 19 significant digits or a power of ten beyond 10^22.
 */
static int slow_double(const unsigned char *s, const unsigned char *e, locale_t loc, double *out)
{
	char small[128];
	size_t n = (size_t)(e - s);
	char *buf = n < sizeof small ? small : malloc(n + 1);
	if (buf == NULL)
		return -1; /* a field of more than 127 bytes and no memory: refused as if not a number */
	size_t k = 0;
	for (const unsigned char *p = s; p < e; p++)
		if (*p != '_')
			buf[k++] = (char)*p;
	buf[k] = '\0';
	*out = strtod_l(buf, NULL, loc);
	if (buf != small)
		free(buf);
	return 0;
}

/*
 * One field starting at p (the byte after a separating space) and ending at
 * the next space or at le. On success stores the float, returns the end of
 * the field; NULL when it is not a number.
 */
const unsigned char *embd_tv_parse_field(const unsigned char *p, const unsigned char *le, float *out, locale_t loc)
{
	/* The common shape first ("-0.41242": sign, at most 19 digits, '.'), in one tight loop; else the full grammar.
	 */
	{
		const unsigned char *s = p;
		int neg = s < le && *s == '-';
		s += neg;
		const unsigned char *d0 = s;
		uint64_t m = 0;
		while (s < le && digit(*s))
			m = m * 10 + (uint64_t)(*s++ - '0');
		ptrdiff_t ni = s - d0, nf = 0;
		if (s < le && *s == '.') {
			const unsigned char *f0 = ++s;
			while (s < le && digit(*s))
				m = m * 10 + (uint64_t)(*s++ - '0');
			nf = s - f0;
		}
		if ((s == le || *s == ' ') && ni + nf > 0 && ni + nf <= 19 && nf <= 22 && m <= (UINT64_C(1) << 53)) {
			float f = (float)((double)m / pow10_exact[nf]);
			*out = neg ? -f : f;
			return s;
		}
	}
	const unsigned char *s = p;
	while (s < le && field_ws(*s))
		s++;
	const unsigned char *num = s;
	int neg = 0;
	if (s < le && (*s == '+' || *s == '-')) {
		neg = *s == '-';
		s++;
	}
	if (s < le && !digit(*s) && *s != '.') {
		/* inf, infinity, nan: the letters run to the end of the field (before trailing whitespace). */
		const unsigned char *w = s;
		while (w < le && *w != ' ' && !field_ws(*w))
			w++;
		size_t n = (size_t)(w - s);
		uint32_t bits;
		if (ieq(s, n, "inf") || ieq(s, n, "infinity"))
			bits = 0x7f800000u;
		else if (ieq(s, n, "nan"))
			bits = 0x7fc00000u; /* NumPy's NaN; the sign of the text is kept, as float('-nan') keeps it */
		else
			return NULL;
		while (w < le && field_ws(*w))
			w++;
		if (w < le && *w != ' ')
			return NULL;
		*out = f32_from_bits(bits | (neg ? 0x80000000u : 0));
		return w;
	}
	uint64_t mant = 0;
	int nd = 0, trunc = 0, any = 0;
	long exp10 = 0;
	/* Integer part. */
	while (s < le) {
		unsigned char c = *s;
		if (digit(c)) {
			any = 1;
			if (mant == 0 && c == '0') {
				/* a leading zero adds nothing */
			} else if (nd < 19) {
				mant = mant * 10 + (uint64_t)(c - '0');
				nd++;
			} else {
				exp10++;
				trunc |= c != '0';
			}
			s++;
		} else if (c == '_' && s > num && digit(s[-1]) && s + 1 < le && digit(s[1])) {
			s++;
		} else {
			break;
		}
	}
	if (s < le && *s == '.') {
		s++;
		while (s < le) {
			unsigned char c = *s;
			if (digit(c)) {
				any = 1;
				if (mant == 0 && c == '0') {
					exp10--;
				} else if (nd < 19) {
					mant = mant * 10 + (uint64_t)(c - '0');
					nd++;
					exp10--;
				} else {
					trunc |= c != '0';
				}
				s++;
			} else if (c == '_' && digit(s[-1]) && s + 1 < le && digit(s[1])) {
				s++;
			} else {
				break;
			}
		}
	}
	if (!any)
		return NULL;
	if (s < le && (*s == 'e' || *s == 'E')) {
		s++;
		int eneg = 0;
		if (s < le && (*s == '+' || *s == '-')) {
			eneg = *s == '-';
			s++;
		}
		if (s >= le || !digit(*s))
			return NULL;
		long ev = 0;
		while (s < le) {
			if (digit(*s)) {
				if (ev < 100000000)
					ev = ev * 10 + (*s - '0');
				s++;
			} else if (*s == '_' && digit(s[-1]) && s + 1 < le && digit(s[1])) {
				s++;
			} else {
				break;
			}
		}
		exp10 += eneg ? -ev : ev;
	}
	const unsigned char *nend = s;
	while (s < le && field_ws(*s))
		s++;
	if (s < le && *s != ' ')
		return NULL;
	double d;
	if (mant == 0) {
		d = 0.0;
	} else if (!trunc && mant <= (UINT64_C(1) << 53) && exp10 >= -22 && exp10 <= 22) {
		/* Clinger's fast path: both operands exact, so one IEEE operation rounds once, correctly. */
		d = (double)mant;
		d = exp10 >= 0 ? d * pow10_exact[exp10] : d / pow10_exact[-exp10];
	} else {
		if (slow_double(num + (num < nend && (*num == '+' || *num == '-')), nend, loc, &d) != 0)
			return NULL;
	}
	float f = (float)d; /* the second rounding: np.float32(float(text)) */
	*out = neg ? -f : f;
	return s;
}
