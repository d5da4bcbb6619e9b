/* Small readers of the kernel's plain text shared by ksight's smaps extensions
 * (_smapsparse.c, _smapslight.c, _smapspmap.c), compiled into each as static inline functions. */
#ifndef KSIGHT_SMAPSTEXT_H
#define KSIGHT_SMAPSTEXT_H

#include <string.h>

static inline int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 1-16 hex digits in [p, e) -> *out */
static inline int hex_span(const char *p, const char *e, unsigned long long *out) {
    if (e - p < 1 || e - p > 16)
        return 0;
    unsigned long long v = 0;
    for (; p < e; p++) {
        int h = hexval(*p);
        if (h < 0)
            return 0;
        v = (v << 4) | (unsigned long long)h;
    }
    *out = v;
    return 1;
}

/* 1-19 decimal digits in [p, e) -> *out (never past 2^64) */
static inline int dec_span(const char *p, const char *e, unsigned long long *out) {
    if (e - p < 1 || e - p > 19)
        return 0;
    unsigned long long v = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        v = v * 10 + (unsigned long long)(*p - '0');
    }
    *out = v;
    return 1;
}

/* the position of c in [p, e), or e */
static inline const char *find(const char *p, const char *e, char c) {
    const char *q = memchr(p, c, (size_t)(e - p));
    return q ? q : e;
}

/* The end of the line at p (its '\n'), checking on the way that the line is printable ASCII or
 * tabs; *tabs set when it holds a tab. NULL for any other byte, or no newline before end. One
 * pass, eight bytes at a time while none of them is below 0x20 or above 0x7e (the word trick of
 * "Bit Twiddling Hacks", hasless/haszero): the ~4 MB of a 5,000-mapping smaps are read once,
 * not twice (memchr, then a byte loop). */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
static inline const char *line_end(const char *p, const char *end, int *tabs) {
    for (;;) {
        while (end - p >= 8) {
            unsigned long long x;
            memcpy(&x, p, 8);
            unsigned long long y = x ^ (0x7fULL * ONES);
            if ((((x - 0x20ULL * ONES) & ~x) | x | ((y - ONES) & ~y)) & HIGHS)
                break;
            p += 8;
        }
        for (;; p++) {
            if (p >= end)
                return NULL;
            unsigned char c = (unsigned char)*p;
            if (c >= 0x20 && c <= 0x7e)
                continue;
            if (c == '\n')
                return p;
            if (c != '\t')
                return NULL;
            *tabs = 1;
            p++;
            break; /* whole words again */
        }
    }
}

#endif
