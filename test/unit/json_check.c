// SPDX-License-Identifier: MIT
/*
 * A strict RFC 8259 validator for crest show's output, so the unit tests can check every
 * document (thousands, in the fuzz tests) without an external JSON tool.  It only answers
 * "is this valid JSON" and where it is not; it builds nothing.
 */
#include <stdio.h>
#include <string.h>

#include "fixtures.h"

#define JSON_CHECK_DEPTH 64

struct jp {
	const unsigned char *s, *end, *start;
	int depth;
	const char *why;
};

static bool fail(struct jp *p, const char *why)
{
	if (!p->why)
		p->why = why;
	return false;
}

static void skip_ws(struct jp *p)
{
	while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r'))
		p->s++;
}

static bool is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* One UTF-8 sequence: shortest form, no surrogates, at most U+10FFFF. */
static bool utf8_char(struct jp *p)
{
	const unsigned char *s = p->s;
	size_t n, left = p->end - s;
	unsigned int cp, min;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f, min = 0x80;
	else if ((s[0] & 0xf0) == 0xe0)
		n = 3, cp = s[0] & 0x0f, min = 0x800;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07, min = 0x10000;
	else
		return fail(p, "invalid UTF-8 lead byte");
	if (n > left)
		return fail(p, "UTF-8 sequence cut off");
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return fail(p, "invalid UTF-8 continuation");
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return fail(p, "overlong or out-of-range UTF-8");
	p->s += n;
	return true;
}

static bool string(struct jp *p)
{
	if (p->s >= p->end || *p->s != '"')
		return fail(p, "expected a string");
	p->s++;
	while (p->s < p->end && *p->s != '"') {
		if (*p->s < 0x20)
			return fail(p, "raw control character in a string");
		if (*p->s >= 0x80) {
			if (!utf8_char(p))
				return false;
			continue;
		}
		if (*p->s++ != '\\')
			continue;
		if (p->s >= p->end)
			break;
		if (*p->s == 'u') {
			if (p->end - p->s < 5 || !is_hex(p->s[1]) || !is_hex(p->s[2]) ||
			    !is_hex(p->s[3]) || !is_hex(p->s[4]))
				return fail(p, "bad \\u escape");
			p->s += 5;
		} else if (strchr("\"\\/bfnrt", *p->s) && *p->s) {
			p->s++;
		} else {
			return fail(p, "bad escape");
		}
	}
	if (p->s >= p->end)
		return fail(p, "unterminated string");
	p->s++;
	return true;
}

static bool digits(struct jp *p)
{
	const unsigned char *s = p->s;

	while (p->s < p->end && *p->s >= '0' && *p->s <= '9')
		p->s++;
	return p->s > s || fail(p, "expected digits");
}

static bool number(struct jp *p)
{
	if (p->s < p->end && *p->s == '-')
		p->s++;
	if (p->s < p->end && *p->s == '0')
		p->s++;
	else if (!digits(p))
		return false;
	if (p->s < p->end && *p->s == '.') {
		p->s++;
		if (!digits(p))
			return false;
	}
	if (p->s < p->end && (*p->s == 'e' || *p->s == 'E')) {
		p->s++;
		if (p->s < p->end && (*p->s == '+' || *p->s == '-'))
			p->s++;
		if (!digits(p))
			return false;
	}
	return true;
}

static bool literal(struct jp *p, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(p->end - p->s) < n || memcmp(p->s, word, n))
		return fail(p, "unexpected token");
	p->s += n;
	return true;
}

static bool value(struct jp *p);

/* The members of an object or the elements of an array, after the opening bracket. */
static bool members(struct jp *p, char close, bool keyed)
{
	skip_ws(p);
	if (p->s < p->end && *p->s == close) {
		p->s++;
		return true;
	}
	for (;;) {
		skip_ws(p);
		if (keyed) {
			if (!string(p))
				return false;
			skip_ws(p);
			if (p->s >= p->end || *p->s++ != ':')
				return fail(p, "expected ':'");
		}
		if (!value(p))
			return false;
		skip_ws(p);
		if (p->s >= p->end)
			return fail(p, "unterminated object or array");
		if (*p->s == close) {
			p->s++;
			return true;
		}
		if (*p->s++ != ',')
			return fail(p, "expected ',' or a closing bracket");
	}
}

static bool value(struct jp *p)
{
	bool ok;

	skip_ws(p);
	if (p->s >= p->end)
		return fail(p, "expected a value");
	switch (*p->s) {
	case '{':
	case '[':
		if (++p->depth > JSON_CHECK_DEPTH)
			return fail(p, "nested too deeply");
		p->s++;
		ok = members(p, p->s[-1] == '{' ? '}' : ']', p->s[-1] == '{');
		p->depth--;
		return ok;
	case '"':
		return string(p);
	case 't':
		return literal(p, "true");
	case 'f':
		return literal(p, "false");
	case 'n':
		return literal(p, "null");
	default:
		return number(p);
	}
}

bool unit_json_valid(const char *doc, size_t len, char *why, size_t whylen)
{
	struct jp p = {(const unsigned char *)doc, (const unsigned char *)doc + len,
		       (const unsigned char *)doc, 0, NULL};
	bool ok = value(&p);

	if (ok) {
		skip_ws(&p);
		if (p.s != p.end)
			ok = fail(&p, "trailing characters after the document");
	}
	if (!ok && why)
		snprintf(why, whylen, "%s at byte %td", p.why, p.s - p.start);
	return ok;
}
