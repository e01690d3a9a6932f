/* An upstream's response, read without llhttp (runmcp_fast/dataplane/upstream.pxi).

   The head is checked line by line as it is walked for what the gateway needs
   from it (rmf_status_line, rmf_header_line), and the body is framed here
   (rmf_chunked; a Content-Length body is a count). As strict as llhttp was:
   CRLF line ends only (a bare CR or LF, an obs-fold line is refused), header
   names of token characters up to a colon with nothing between, values of
   visible characters, spaces, tabs and obs-text; a chunk size of hex digits,
   extensions of value characters, CRLF after each chunk's data, trailers as
   header lines.

   PERF (bench/mcp/instructions.py, callgrind): llhttp's state machine spent
   ~3,300 instructions on a tools/call's SSE answer (a 390-byte head, one
   chunk), a byte or a few at a time, before the head's lines were walked a
   second time to forward them. Here the walk is the check: with SSE2 (every
   x86-64) 16 bytes of a name or a value are classified at a time.
*/
#ifndef RMF_RESPSCAN_H
#define RMF_RESPSCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Results: 0 done, RMF_MORE the bytes end first, a negative one refuses them
   (rmf_resp_error names it). */
#define RMF_MORE 1
#define RMF_E_STATUS (-1)
#define RMF_E_VERSION (-2)
#define RMF_E_NAME (-3)
#define RMF_E_FOLD (-4)
#define RMF_E_VALUE (-5)
#define RMF_E_LF (-6)
#define RMF_E_CHUNK_SIZE (-7)
#define RMF_E_CHUNK_EXT (-8)
#define RMF_E_CHUNK_END (-9)
#define RMF_E_TRAILER (-10)
#define RMF_E_CONTENT_LENGTH (-11)  /* (_scan_head's) */
#define RMF_BODY_END 2  /* rmf_chunked: the body ended */

static inline const char *rmf_resp_error(int code)
{
    switch (code) {
    case RMF_E_STATUS: return "invalid status line";
    case RMF_E_VERSION: return "an HTTP version other than 1.0 or 1.1";
    case RMF_E_NAME: return "invalid header name (a token up to its colon)";
    case RMF_E_FOLD: return "a folded header line (obs-fold)";
    case RMF_E_VALUE: return "invalid character in a header value";
    case RMF_E_LF: return "a line not ended by CRLF";
    case RMF_E_CHUNK_SIZE: return "invalid chunk size";
    case RMF_E_CHUNK_EXT: return "invalid chunk extension";
    case RMF_E_CHUNK_END: return "a chunk's data not followed by CRLF";
    case RMF_E_TRAILER: return "invalid trailer line";
    case RMF_E_CONTENT_LENGTH:
        return "a Content-Length that is not one number, or beside Transfer-Encoding";
    }
    return "invalid response";
}

/* RFC 9110 §5.6.2 tchar: ! # $ % & ' * + - . ^ _ ` | ~ DIGIT ALPHA. */
static const unsigned char rmf_tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1,
    ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1,
    ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1,
    ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1,
    ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1,
    ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1,
    ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* A value's bytes: HTAB, SP, VCHAR, obs-text (RFC 9110 §5.5); not CTLs nor DEL. */
static inline int rmf_value_byte(unsigned char c)
{
    return (c >= 0x20 && c != 0x7f) || c == 9;
}

#if defined(__SSE2__)
/* The bytes of v in [lo, hi], as a mask (as in _pathscan.h). */
#define RMF_RS_IN_RANGE(v, lo, hi) \
    _mm_cmpgt_epi8(_mm_set1_epi8((char)(-128 + ((hi) - (lo)) + 1)), \
                   _mm_add_epi8((v), _mm_set1_epi8((char)(0x80 - (lo)))))
#endif

/* The first byte at or after p[i] that is not a value byte, or n. */
static inline Py_ssize_t rmf_value_end(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
#if defined(__SSE2__)
    while (i + 16 <= n) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        /* CTLs are 0x00-0x1F: as signed bytes, 0 to 31 (obs-text is negative). */
        __m128i ctl = _mm_and_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
                                    _mm_cmpgt_epi8(v, _mm_set1_epi8(-1)));
        ctl = _mm_andnot_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(9)), ctl);
        ctl = _mm_or_si128(ctl, _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f)));
        int mask = _mm_movemask_epi8(ctl);
        if (mask)
            return i + __builtin_ctz((unsigned)mask);
        i += 16;
    }
#endif
    while (i < n && rmf_value_byte(p[i]))
        i++;
    return i;
}

/* The first byte at or after p[i] that is not a tchar, or n. */
static inline Py_ssize_t rmf_token_end(const unsigned char *p, Py_ssize_t i, Py_ssize_t n)
{
#if defined(__SSE2__)
    /* The usual name bytes (letters, digits, "-" and "_") sixteen at a time;
       the first other byte is looked up in the table, and is most often the colon. */
    while (i + 16 <= n) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        __m128i plain = _mm_or_si128(
            _mm_or_si128(RMF_RS_IN_RANGE(v, 0x30, 0x39), RMF_RS_IN_RANGE(v, 0x41, 0x5A)),
            _mm_or_si128(RMF_RS_IN_RANGE(v, 0x61, 0x7A),
                         _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(0x2D)),
                                      _mm_cmpeq_epi8(v, _mm_set1_epi8(0x5F)))));
        unsigned other = ~(unsigned)_mm_movemask_epi8(plain) & 0xFFFFu;
        if (other) {
            i += __builtin_ctz(other);
            if (!rmf_tchar[p[i]])
                return i;
            i++;
            continue;
        }
        i += 16;
    }
#endif
    while (i < n && rmf_tchar[p[i]])
        i++;
    return i;
}

/* The status line at p[pos:n]: "HTTP/1.x DDD[ reason]" CRLF. Sets *status,
   *http11 and *eol (where its CR is); returns 0, RMF_MORE or an error. */
static inline int rmf_status_line(const char *buf, Py_ssize_t pos, Py_ssize_t n,
                                  int *status, int *http11, Py_ssize_t *eol)
{
    const unsigned char *p = (const unsigned char *)buf;
    Py_ssize_t i;
    if (n - pos < 13) {
        /* Refuse early what can never become a status line. */
        static const char prefix[] = "HTTP/1.";
        for (i = pos; i < n && i - pos < 7; i++)
            if (p[i] != (unsigned char)prefix[i - pos])
                return RMF_E_STATUS;
        return RMF_MORE;
    }
    if (memcmp(p + pos, "HTTP/", 5) != 0)
        return RMF_E_STATUS;
    if (p[pos + 5] != '1' || p[pos + 6] != '.' || (p[pos + 7] != '0' && p[pos + 7] != '1'))
        return (p[pos + 5] >= '0' && p[pos + 5] <= '9') ? RMF_E_VERSION : RMF_E_STATUS;
    *http11 = p[pos + 7] == '1';
    if (p[pos + 8] != ' ')
        return RMF_E_STATUS;
    i = pos + 9;
    if (p[i] < '0' || p[i] > '9' || p[i + 1] < '0' || p[i + 1] > '9' || p[i + 2] < '0'
        || p[i + 2] > '9')
        return RMF_E_STATUS;
    *status = (p[i] - '0') * 100 + (p[i + 1] - '0') * 10 + (p[i + 2] - '0');
    i += 3;
    if (p[i] == ' ')
        i = rmf_value_end(p, i + 1, n);  /* the reason phrase */
    if (i >= n)
        return RMF_MORE;
    if (p[i] != 13)
        return RMF_E_STATUS;
    if (i + 1 >= n)
        return RMF_MORE;
    if (p[i + 1] != 10)
        return RMF_E_LF;
    *eol = i;
    return 0;
}

/* One header (or trailer) line at p[pos:n]: name ":" value CRLF. Sets *colon
   and *eol (where its CR is); returns 0, RMF_MORE or an error. The empty line
   that ends a head is the caller's (p[pos] == CR). */
static inline int rmf_header_line(const char *buf, Py_ssize_t pos, Py_ssize_t n,
                                  Py_ssize_t *colon, Py_ssize_t *eol)
{
    const unsigned char *p = (const unsigned char *)buf;
    Py_ssize_t i = rmf_token_end(p, pos, n);
    if (i >= n)
        return RMF_MORE;
    if (p[i] != ':' || i == pos) {
        if (i == pos && (p[i] == ' ' || p[i] == 9))
            return RMF_E_FOLD;
        if (i == pos && p[i] == 10)
            return RMF_E_LF;
        return RMF_E_NAME;
    }
    *colon = i;
    i = rmf_value_end(p, i + 1, n);
    if (i >= n)
        return RMF_MORE;
    if (p[i] != 13)
        return p[i] == 10 ? RMF_E_LF : RMF_E_VALUE;
    if (i + 1 >= n)
        return RMF_MORE;
    if (p[i + 1] != 10)
        return RMF_E_LF;
    *eol = i;
    return 0;
}

/* A head gathered across reads, checked as its lines come: from p[*from], the
   start of a line not checked yet (`first`: the status line), to its empty line.
   Returns 0 when the head ends (its empty line is there), RMF_MORE with *from
   moved to the first line not complete yet, or an error: a head that spans
   reads is refused as soon as its bytes are, not once it ends. */
static inline int rmf_head_check(const char *buf, Py_ssize_t *from, Py_ssize_t n, int first)
{
    Py_ssize_t i = *from, colon, eol;
    int status, http11, rc;
    if (first) {
        rc = rmf_status_line(buf, i, n, &status, &http11, &eol);
        if (rc)
            return rc;
        i = *from = eol + 2;
    }
    for (;;) {
        if (i >= n)
            return RMF_MORE;
        if (buf[i] == 13) {
            if (i + 1 >= n)
                return RMF_MORE;
            return buf[i + 1] == 10 ? 0 : RMF_E_LF;
        }
        rc = rmf_header_line(buf, i, n, &colon, &eol);
        if (rc)
            return rc;
        i = *from = eol + 2;
    }
}

/* -- a chunked body (RFC 9112 §7.1) ------------------------------------------- */

enum {
    RMF_CK_SIZE0 = 0,  /* a chunk's size: its first hex digit */
    RMF_CK_SIZE,       /* more digits, or what follows them */
    RMF_CK_EXT,        /* an extension, up to the CR */
    RMF_CK_SIZE_LF,    /* the LF of the size line */
    RMF_CK_DATA,       /* `left` bytes of data */
    RMF_CK_DATA_CR,    /* the CRLF after them */
    RMF_CK_DATA_LF,
    RMF_CK_TRAILER,    /* after the last chunk: a trailer line or the empty line */
    RMF_CK_TRAILER_NAME,
    RMF_CK_TRAILER_LINE,
    RMF_CK_TRAILER_LF,
    RMF_CK_END_LF,     /* the empty line's LF */
    RMF_CK_DONE,
};

typedef struct {
    int state;
    unsigned long long left;   /* data bytes left in this chunk; or the size being read */
} rmf_chunk_t;

/* Frames p[*pos:n]: returns RMF_MORE when all was consumed and the body goes on,
   0 with *at and *len set to data bytes (*pos moved past them): call again;
   RMF_BODY_END when the body ended (*pos just past its last byte), or an error. */
static inline int rmf_chunked(rmf_chunk_t *ck, const char *buf, Py_ssize_t *pos,
                              Py_ssize_t n, Py_ssize_t *at, Py_ssize_t *len)
{
    const unsigned char *p = (const unsigned char *)buf;
    Py_ssize_t i = *pos;
    unsigned char c;
    int digit;
    while (i < n) {
        c = p[i];
        switch (ck->state) {
        case RMF_CK_SIZE0:
        case RMF_CK_SIZE:
            if (c >= '0' && c <= '9')
                digit = c - '0';
            else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
                digit = (c | 0x20) - 'a' + 10;
            else
                digit = -1;
            if (digit >= 0) {
                if (ck->left >> 56)  /* more than 2^60: never a real chunk */
                    return RMF_E_CHUNK_SIZE;
                ck->left = (ck->left << 4) | (unsigned)digit;
                ck->state = RMF_CK_SIZE;
                i++;
                break;
            }
            if (ck->state == RMF_CK_SIZE0)
                return RMF_E_CHUNK_SIZE;
            if (c == 13) {
                ck->state = RMF_CK_SIZE_LF;
            } else if (c == ';') {
                ck->state = RMF_CK_EXT;
            } else {
                /* Spaces too (RFC 9112's BWS before a ";"): refused, as llhttp
                   refused them; no server sends them. */
                return RMF_E_CHUNK_SIZE;
            }
            i++;
            break;
        case RMF_CK_EXT:
            i = rmf_value_end(p, i, n);
            if (i >= n)
                break;
            if (p[i] != 13)
                return p[i] == 10 ? RMF_E_LF : RMF_E_CHUNK_EXT;
            ck->state = RMF_CK_SIZE_LF;
            i++;
            break;
        case RMF_CK_SIZE_LF:
            if (c != 10)
                return RMF_E_LF;
            i++;
            ck->state = ck->left == 0 ? RMF_CK_TRAILER : RMF_CK_DATA;
            break;
        case RMF_CK_DATA: {
            Py_ssize_t take = n - i;
            if ((unsigned long long)take >= ck->left) {
                take = (Py_ssize_t)ck->left;
                ck->state = RMF_CK_DATA_CR;
            }
            ck->left -= (unsigned long long)take;
            *at = i;
            *len = take;
            *pos = i + take;
            return 0;
        }
        case RMF_CK_DATA_CR:
            if (c != 13)
                return RMF_E_CHUNK_END;
            ck->state = RMF_CK_DATA_LF;
            i++;
            break;
        case RMF_CK_DATA_LF:
            if (c != 10)
                return RMF_E_CHUNK_END;
            ck->state = RMF_CK_SIZE0;
            ck->left = 0;
            i++;
            break;
        case RMF_CK_TRAILER:
            if (c == 13) {
                ck->state = RMF_CK_END_LF;
                i++;
                break;
            }
            /* A trailer line: a name, a colon, a value (dropped, as llhttp did). */
            if (!rmf_tchar[c])
                return c == 10 ? RMF_E_LF : RMF_E_TRAILER;
            ck->state = RMF_CK_TRAILER_NAME;
            break;
        case RMF_CK_TRAILER_NAME:
            i = rmf_token_end(p, i, n);
            if (i >= n)
                break;
            if (p[i] != ':')
                return RMF_E_TRAILER;
            ck->state = RMF_CK_TRAILER_LINE;
            i++;
            break;
        case RMF_CK_TRAILER_LINE:
            i = rmf_value_end(p, i, n);
            if (i >= n)
                break;
            if (p[i] != 13)
                return p[i] == 10 ? RMF_E_LF : RMF_E_TRAILER;
            ck->state = RMF_CK_TRAILER_LF;
            i++;
            break;
        case RMF_CK_TRAILER_LF:
            if (c != 10)
                return RMF_E_LF;
            ck->state = RMF_CK_TRAILER;
            i++;
            break;
        case RMF_CK_END_LF:
            if (c != 10)
                return RMF_E_LF;
            ck->state = RMF_CK_DONE;
            *pos = i + 1;
            return RMF_BODY_END;
        default:
            *pos = i;
            return RMF_BODY_END;
        }
    }
    *pos = i;
    return RMF_MORE;
}

#endif
