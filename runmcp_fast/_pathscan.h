/* The router's one pass over a path (runmcp_fast/_router.pyx, _prepare).

   rmf_scan_bits(p, n, table) is the OR of table[p[i]] over p[0..n): which slow
   paths (a query to cut, normalisation, dot segments) the path needs. Every
   byte a canonical path may hold raw has table[b] == 0, except "." (S_DOT).
   One liberty: for paths of 16 bytes or more, S_DOT is reported only when a
   dot follows a "/" (no dot segment is possible otherwise); S_DOT means "a dot
   segment is possible", never "there is one".

   PERF: with SSE2 (every x86-64), sixteen bytes are classified at a time: a
   chunk of the usual path bytes costs ~1.3 instructions a byte against ~3 for
   the table (two loads a byte); only the other bytes of a chunk are looked up
   in the table. Graph's paths are ~130 bytes long: the scan was a fifth of a
   match. Elsewhere the table loop alone runs; both give the same bits but
   S_DOT (the router's tests and fuzzers compare paths with every byte value).
*/
#ifndef RMF_PATHSCAN_H
#define RMF_PATHSCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline unsigned char rmf_scan_table(const unsigned char *p, Py_ssize_t n,
                                           const unsigned char *table)
{
    unsigned char bits = 0;
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4)
        bits |= table[p[i]] | table[p[i + 1]] | table[p[i + 2]] | table[p[i + 3]];
    for (; i < n; i++)
        bits |= table[p[i]];
    return bits;
}

#if defined(__SSE2__)
/* The bytes of v in [lo, hi], as a mask: v - lo (mod 256) <= hi - lo, moved
   to a signed compare (two instructions). */
#define RMF_IN_RANGE(v, lo, hi) \
    _mm_cmpgt_epi8(_mm_set1_epi8((char)(-128 + ((hi) - (lo)) + 1)), \
                   _mm_add_epi8((v), _mm_set1_epi8((char)(0x80 - (lo)))))

/* 16 bytes: a mask of bytes that may stand raw in a canonical path. It leaves out a few such bytes (! $ = ~: rare in paths, they take
   the table) but never takes another: 0x26-0x3B (& ' ( ) * + , - . / 0-9 : ;),
   0x40-0x5A (@ A-Z), "_" and a-z. */
static inline int rmf_plain16(__m128i v)
{
    __m128i plain = _mm_or_si128(
        _mm_or_si128(RMF_IN_RANGE(v, 0x26, 0x3B), RMF_IN_RANGE(v, 0x40, 0x5A)),
        _mm_or_si128(RMF_IN_RANGE(v, 0x61, 0x7A), _mm_cmpeq_epi8(v, _mm_set1_epi8(0x5F))));
    return _mm_movemask_epi8(plain);
}
#endif

#if defined(__SSE2__)
/* One chunk p[i..i+16) of rmf_scan_bits, `before` being p[i-1..i+15). */
static inline __m128i rmf_scan_chunk(const unsigned char *p, Py_ssize_t i, __m128i v,
                                     __m128i before, const unsigned char *table,
                                     unsigned char *bits)
{
    int plain = rmf_plain16(v);
    if (plain != 0xFFFF) {
        /* Only the other bytes are looked up (usually one: a "$" or "=" of
           Graph's paths), not the whole chunk. */
        unsigned odd = ~(unsigned)plain & 0xFFFFu;
        do {
            *bits |= table[p[i + __builtin_ctz(odd)]];
            odd &= odd - 1;
        } while (odd);
    }
    return _mm_and_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('.')),
                         _mm_cmpeq_epi8(before, _mm_set1_epi8('/')));
}
#endif

/* s_dot: the table's value for "." */
static inline unsigned char rmf_scan_bits(const unsigned char *p, Py_ssize_t n,
                                          const unsigned char *table, unsigned char s_dot)
{
#if defined(__SSE2__)
    if (n >= 16) {
        unsigned char bits = 0;
        Py_ssize_t i;
        /* Only a dot right after a "/" can start a dot segment: Graph's
           "microsoft.graph.x" segments hold dots in most requests, and sending
           each of those to the dot-segment check cost more than this test
           (callgrind). PERF: the test is a mask ORed up over the chunks, no
           branch per chunk: the byte before each byte is the same load one
           byte earlier (for the first chunk, shifted in: p[0] is "/"). */
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i dot_after_slash = rmf_scan_chunk(p, 0, v, _mm_slli_si128(v, 1), table, &bits);
        for (i = 16; i + 16 <= n; i += 16)
            dot_after_slash = _mm_or_si128(
                dot_after_slash,
                rmf_scan_chunk(p, i, _mm_loadu_si128((const __m128i *)(p + i)),
                               _mm_loadu_si128((const __m128i *)(p + i - 1)), table, &bits));
        if (i < n) {
            /* The last 16 bytes, overlapping the chunk before: an OR does not mind. */
            i = n - 16;
            dot_after_slash = _mm_or_si128(
                dot_after_slash,
                rmf_scan_chunk(p, i, _mm_loadu_si128((const __m128i *)(p + i)),
                               _mm_loadu_si128((const __m128i *)(p + i - 1)), table, &bits));
        }
        if (_mm_movemask_epi8(dot_after_slash))
            bits |= s_dot;
        return bits;
    }
#else
    (void)s_dot;
#endif
    return rmf_scan_table(p, n, table);
}


/* The walk's byte steps (_router.pyx, _walk_node and _walk_param).

   PERF: a param value's end is found inline instead of through libc's memchr
   (a call through the PLT for a ~10-byte value), and a child among more than
   8 is found 16 first bytes at a time. The table side may be read past its
   end: the router pads its node array and text pool (RMF_PAD bytes) so those
   reads stay in memory it owns; the path side is only read within its length. */
#define RMF_PAD 16

/* Index of c among s[0..n), or -1. s is readable up to s + round_up(n, 16).

   PERF: up to 8 children stay a loop. Branch-free forms (one SSE2 compare for any
   count, an 8-byte SWAR search) made matches 14-26 % slower (measured in alternating
   processes): the walk chases pointers, and a predicted loop exit lets the child node's
   load start at once, while a computed index makes it wait for the whole search. */
static inline Py_ssize_t rmf_find_byte(const unsigned char *s, unsigned char c, Py_ssize_t n)
{
    Py_ssize_t i;
    if (n <= 8) {
        for (i = 0; i < n; i++)
            if (s[i] == c)
                return i;
        return -1;
    }
#if defined(__SSE2__)
    const __m128i want = _mm_set1_epi8((char)c);
    for (i = 0; i < n; i += 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(s + i)), want));
        if (n - i < 16)
            m &= (1u << (n - i)) - 1u;
        if (m)
            return i + __builtin_ctz(m);
    }
    return -1;
#else
    const unsigned char *hit = (const unsigned char *)memchr(s, c, (size_t)n);
    return hit == NULL ? -1 : hit - s;
#endif
}

/* Whether a[0..n) == b[0..n), reading neither past n.

   PERF: words, not bytes: the two ends of the range as overlapping 8, 4 or 2
   byte loads (one compare each) and 8 bytes a step in between. A node's text
   is compared byte by byte otherwise (~3 instructions a byte: a tenth of a
   GitHub match), or through libc's memcmp beyond 16 bytes (a call through the
   PLT, for Graph's "microsoft.graph.<name>" segments). */
static inline int rmf_same(const unsigned char *a, const unsigned char *b, Py_ssize_t n)
{
    uint64_t x, y;
    uint32_t u, v;
    uint16_t s, t;
    if (n >= 8) {
        Py_ssize_t i;
        for (i = 0; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y)
                return 0;
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        memcpy(&u, a, 4);
        memcpy(&v, b, 4);
        if (u != v)
            return 0;
        memcpy(&u, a + n - 4, 4);
        memcpy(&v, b + n - 4, 4);
        return u == v;
    }
    if (n >= 2) {
        memcpy(&s, a, 2);
        memcpy(&t, b, 2);
        if (s != t)
            return 0;
        memcpy(&s, a + n - 2, 2);
        memcpy(&t, b + n - 2, 2);
        return s == t;
    }
    return n == 0 || a[0] == b[0];
}

/* 0x20 in each byte of a word that is a lower-case letter ('a'-'z'), else 0: the
   high bit of each byte's 7-bit part plus 0x1f says >= 'a', plus 0x05 says > 'z'
   (no carry leaves a byte); bytes past 0x7f are no letters. */
static inline uint64_t rmf_letters(uint64_t y)
{
    const uint64_t high = 0x8080808080808080ULL;
    uint64_t h = y & ~high;
    return ((h + 0x1f1f1f1f1f1f1f1fULL) & ~(h + 0x0505050505050505ULL) & ~y & high) >> 2;
}

/* Whether a[0..n), 'A'-'Z' taken as lower case, equals `lower` (lower case):
   `strncasecmp(a, lower, n) == 0` for a `lower` with no NUL byte, in the C locale.
   Where `lower` has a letter, a byte of `a` with 0x20 set is it (the upper-case
   letter is the one other byte that becomes it); elsewhere, the byte is it.

   PERF: a word at a time, inline: libc's strncasecmp through the PLT was ~40
   instructions a header name (callgrind: several a request in _header_kind); with
   `lower` a literal, the compiler folds its words and masks into constants. */
static inline int rmf_same_ci(const unsigned char *a, const unsigned char *lower, Py_ssize_t n)
{
    uint64_t x, y;
    uint32_t u, v;
    Py_ssize_t i;
    if (n >= 8) {
        for (i = 0; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, lower + i, 8);
            if ((x | rmf_letters(y)) != y)
                return 0;
        }
        memcpy(&x, a + n - 8, 8);
        memcpy(&y, lower + n - 8, 8);
        return (x | rmf_letters(y)) == y;
    }
    if (n >= 4) {
        memcpy(&u, a, 4);
        memcpy(&v, lower, 4);
        if ((u | (uint32_t)rmf_letters(v)) != v)
            return 0;
        memcpy(&u, a + n - 4, 4);
        memcpy(&v, lower + n - 4, 4);
        return (u | (uint32_t)rmf_letters(v)) == v;
    }
    for (i = 0; i < n; i++) {
        if ((a[i] | (unsigned char)rmf_letters(lower[i])) != lower[i])
            return 0;
    }
    return 1;
}

/* The first "/" in p[0..n) as an index, or n. */
static inline Py_ssize_t rmf_segment_end(const unsigned char *p, Py_ssize_t n)
{
    Py_ssize_t i = 0;
#if defined(__SSE2__)
    const __m128i slash = _mm_set1_epi8('/');
    for (; i + 16 <= n; i += 16) {
        unsigned m = (unsigned)_mm_movemask_epi8(
            _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i)), slash));
        if (m)
            return i + __builtin_ctz(m);
    }
#endif
    for (; i < n; i++)
        if (p[i] == '/')
            return i;
    return n;
}

#endif /* RMF_PATHSCAN_H */
