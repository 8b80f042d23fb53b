/*
 * unicode.c - UTF-8 validation/decoding, the GPT-2 byte-level alphabet and the
 * character classes the tokenizer stages need (HF tokenizers semantics, with
 * categories from utf8proc).
 */
#include <utf8proc.h>

#include "model/tokenizer_int.h"

size_t tm__utf8_valid_len(const uint8_t *s, size_t n) {
    if (n == 0)
        return 0;
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    size_t   len;
    uint32_t min;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    uint32_t cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

size_t tm__utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    size_t len = tm__utf8_valid_len(s, n);
    if (len == 0) {
        /* Callers validate first; a stray byte decodes as itself so loops advance. */
        *cp = n ? s[0] : 0;
        return n ? 1 : 0;
    }
    if (len == 1) {
        *cp = s[0];
        return 1;
    }
    uint32_t v = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++)
        v = (v << 6) | (s[i] & 0x3F);
    *cp = v;
    return len;
}

size_t tm__utf8_encode(uint32_t cp, char *out) {
    uint8_t *o = (uint8_t *)out;
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

size_t tm__utf8_check(const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s;
    size_t         i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t l = tm__utf8_valid_len(p + i, n - i);
        if (l == 0)
            return i;
        i += l;
    }
    return SIZE_MAX;
}

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the
 * other 68 bytes to U+0100.. in byte order. */
static bool bl_printable(unsigned b) {
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

uint32_t tm__bytelevel_cp(uint8_t b) {
    if (bl_printable(b))
        return b;
    uint32_t n = 0;
    for (unsigned i = 0; i < b; i++)
        if (!bl_printable(i))
            n++;
    return 256 + n;
}

int tm__bytelevel_byte(uint32_t cp) {
    if (cp < 256)
        return bl_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68)
        return -1;
    uint32_t n = cp - 256;
    for (unsigned i = 0; i < 256; i++) {
        if (!bl_printable(i)) {
            if (n == 0)
                return (int)i;
            n--;
        }
    }
    return -1;
}

bool tm__uni_is_whitespace(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

static utf8proc_category_t cat(uint32_t cp) { return utf8proc_category((utf8proc_int32_t)cp); }

bool tm__uni_is_punct(uint32_t cp) {
    if (cp < 0x80)
        return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) ||
               (cp >= 0x5B && cp <= 0x60) || (cp >= 0x7B && cp <= 0x7E);
    utf8proc_category_t c = cat(cp);
    return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

bool tm__uni_is_bert_punct(uint32_t cp) { return tm__uni_is_punct(cp); }

bool tm__uni_is_control(uint32_t cp) {
    if (cp == '\t' || cp == '\n' || cp == '\r')
        return false;
    utf8proc_category_t c = cat(cp);
    return c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF || c == UTF8PROC_CATEGORY_CS ||
           c == UTF8PROC_CATEGORY_CO || c == UTF8PROC_CATEGORY_CN;
}

bool tm__uni_is_cjk(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

bool tm__uni_is_mark_nonspacing(uint32_t cp) { return cat(cp) == UTF8PROC_CATEGORY_MN; }

bool tm__uni_is_digit(uint32_t cp) {
    utf8proc_category_t c = cat(cp);
    return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_NO;
}

bool tm__uni_is_alnum_word(uint32_t cp) {
    utf8proc_category_t c = cat(cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
           (c >= UTF8PROC_CATEGORY_MN && c <= UTF8PROC_CATEGORY_ME) || c == UTF8PROC_CATEGORY_ND ||
           c == UTF8PROC_CATEGORY_PC;
}
