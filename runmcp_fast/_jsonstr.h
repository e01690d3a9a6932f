/* JSON string scanning, shared by the byte checker (_fastcheck.pyx) and the MCP
   envelope scanner (mcp/_envelope.pyx): where the next byte that can not be copied
   through as string content is ('"', a backslash, a control character, non-ASCII),
   16 bytes a step with SSE2, in wide rounds with AVX2 where the CPU has it. */
#ifndef RUNMCP_JSONSTR_H
#define RUNMCP_JSONSTR_H

#include <stdint.h>
#include <string.h>
#if defined(_MSC_VER)
#include <intrin.h>
static __inline int fc_ctz64(unsigned __int64 x) { unsigned long i; _BitScanForward64(&i, x); return (int)i; }
static __inline int fc_ctz32(unsigned int x) { unsigned long i; _BitScanForward(&i, x); return (int)i; }
#else
#define fc_ctz64(x) __builtin_ctzll(x)
#define fc_ctz32(x) __builtin_ctz(x)
#endif
#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define FC_SSE2 1
#else
#define FC_SSE2 0
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define FC_LITTLE_ENDIAN 0
#else
#define FC_LITTLE_ENDIAN 1
#endif

#if FC_SSE2 && (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define FC_AVX2 1
/* PERF: long strings (a 1 KB body is mostly one) in wide rounds where the CPU
   has AVX2, chosen at run time: the wheel is built for any x86-64. Returns the
   first special byte, or where fewer than 32 bytes are left (none special
   before: fc_special goes on from there). */
__attribute__((target("avx2")))
static const unsigned char *
fc_special_avx2(const unsigned char *p, const unsigned char *end)
{
    const __m256i quote = _mm256_set1_epi8('"');
    const __m256i bslash = _mm256_set1_epi8('\\');
    const __m256i space = _mm256_set1_epi8(0x20);
    /* Indexed by a byte's low 4 bits (0 for a byte past 0x7f): the one byte below
       0x80 with those bits that is special ('"', a backslash), else 0x80 (none). */
    const __m256i odd = _mm256_setr_epi8(
        -128, -128, '"', -128, -128, -128, -128, -128,
        -128, -128, -128, -128, '\\', -128, -128, -128,
        -128, -128, '"', -128, -128, -128, -128, -128,
        -128, -128, -128, -128, '\\', -128, -128, -128);
    __m256i a, b, c, d, ma, mb;
    unsigned int bits;
    /* 128 bytes a round only ask whether one is special: a shuffle and a compare
       a vector find '"' and backslashes, one signed minimum of the four the bytes
       below 0x20 or past 0x7f (a 930-byte string: 288 instructions, not 371 in
       64-byte rounds, callgrind). The 64-byte rounds below then say where. */
    while (end - p >= 128) {
        a = _mm256_loadu_si256((const __m256i *)p);
        b = _mm256_loadu_si256((const __m256i *)(p + 32));
        c = _mm256_loadu_si256((const __m256i *)(p + 64));
        d = _mm256_loadu_si256((const __m256i *)(p + 96));
        ma = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_shuffle_epi8(odd, a), a),
                            _mm256_cmpeq_epi8(_mm256_shuffle_epi8(odd, b), b)),
            _mm256_or_si256(_mm256_cmpeq_epi8(_mm256_shuffle_epi8(odd, c), c),
                            _mm256_cmpeq_epi8(_mm256_shuffle_epi8(odd, d), d)));
        mb = _mm256_cmpgt_epi8(space, _mm256_min_epi8(_mm256_min_epi8(a, b),
                                                      _mm256_min_epi8(c, d)));
        ma = _mm256_or_si256(ma, mb);
        if (!_mm256_testz_si256(ma, ma))
            break;
        p += 128;
    }
    while (end - p >= 64) {
        a = _mm256_loadu_si256((const __m256i *)p);
        b = _mm256_loadu_si256((const __m256i *)(p + 32));
        /* signed: 0x80-0xff are negative, so below 0x20 too */
        ma = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(a, quote), _mm256_cmpeq_epi8(a, bslash)),
            _mm256_cmpgt_epi8(space, a));
        mb = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(b, quote), _mm256_cmpeq_epi8(b, bslash)),
            _mm256_cmpgt_epi8(space, b));
        if (!_mm256_testz_si256(_mm256_or_si256(ma, mb), _mm256_or_si256(ma, mb))) {
            bits = (unsigned int)_mm256_movemask_epi8(ma);
            if (bits)
                return p + fc_ctz32(bits);
            return p + 32 + fc_ctz32((unsigned int)_mm256_movemask_epi8(mb));
        }
        p += 64;
    }
    if (end - p >= 32) {
        a = _mm256_loadu_si256((const __m256i *)p);
        ma = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(a, quote), _mm256_cmpeq_epi8(a, bslash)),
            _mm256_cmpgt_epi8(space, a));
        bits = (unsigned int)_mm256_movemask_epi8(ma);
        if (bits)
            return p + fc_ctz32(bits);
        p += 32;
    }
    return p;
}
static int fc_avx2 = -1;  /* unknown until the first long string */
#else
#define FC_AVX2 0
#endif

/* The first byte in [p, end) that can not be copied through as string
   content: '"', a backslash, a control character (< 0x20) or a non-ASCII
   byte (>= 0x80, checked as UTF-8 by the caller); end if none. */
static inline const unsigned char *
fc_special(const unsigned char *p, const unsigned char *end)
{
#if FC_SSE2
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i bslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    int bits;
    __m128i v, m;
    while (end - p >= 16) {
        v = _mm_loadu_si128((const __m128i *)p);
        /* signed: 0x80-0xff are negative, so below 0x20 too */
        m = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
            _mm_cmplt_epi8(v, space));
        bits = _mm_movemask_epi8(m);
        if (bits)
            return p + fc_ctz32((unsigned int)bits);
        p += 16;
#if FC_AVX2
        /* Not within its first 16 bytes (most keys and short values are): a long
           string, probably. (end is the document's end, not the string's.) */
        if (end - p >= 64) {
            if (fc_avx2 < 0) {
                __builtin_cpu_init();
                fc_avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
            }
            if (fc_avx2)
                p = fc_special_avx2(p, end);
        }
#endif
    }
#endif
#if FC_LITTLE_ENDIAN
    while (end - p >= 8) {
        uint64_t v, q, b, m;
        memcpy(&v, p, 8);
        q = v ^ 0x2222222222222222ULL;
        b = v ^ 0x5c5c5c5c5c5c5c5cULL;
        /* exact up to the first flagged byte, the only one used */
        m = ((q - 0x0101010101010101ULL) & ~q) | ((b - 0x0101010101010101ULL) & ~b)
            | ((v - 0x2020202020202020ULL) & ~v) | v;
        m &= 0x8080808080808080ULL;
        if (m)
            return p + (fc_ctz64(m) >> 3);
        p += 8;
    }
#endif
    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20 && *p < 0x80)
        p++;
    return p;
}

/* The closing quote of a string whose content starts at p when it is within 16
   bytes and nothing special comes before it (most keys and short values), else
   NULL: _str_read reads it. Small enough to be inlined where it is used. */
static inline const unsigned char *
fc_quick_quote(const unsigned char *p, const unsigned char *end)
{
#if FC_SSE2
    if (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        int bits = _mm_movemask_epi8(_mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
                         _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
            _mm_cmplt_epi8(v, _mm_set1_epi8(0x20))));
        if (bits) {
            p += fc_ctz32((unsigned int)bits);
            if (*p == '"')
                return p;
        }
    }
#endif
    return NULL;
}

#endif /* RUNMCP_JSONSTR_H */
