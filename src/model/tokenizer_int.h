/*
 * tokenizer_int.h - the tokenizer's internal pipeline description, shared by the
 * loaders (tokenizer_json.c, tokenizer_gguf.c, tokenizer_llama2c.c) and the stages
 * (tok_normalize.c, tok_pretok.c, tok_bpe.c, tok_wordpiece.c, tokenizer.c).
 *
 * DESIGN
 * ------
 * Every loader fills one struct tm_tokenizer: a vocabulary (id -> bytes, and a
 * hash map bytes -> id), optional merges (pair of ids -> rank and merged id),
 * a list of normalizer steps, pre-tokenizer steps, one model, a post-processor
 * template and decoder steps, plus added tokens. Encoding mirrors Hugging Face
 * tokenizers: split out added tokens, then per remaining segment normalize,
 * pre-tokenize into pieces, run the model per piece, then apply the template.
 *
 * Invariants: every id stored anywhere in the struct is in [0, n_vocab); the
 * loaders check ids from files before storing them. The struct is immutable
 * after init; encode-time caches live in per-call state (thread safety).
 */
#ifndef TM_TOKENIZER_INT_H
#define TM_TOKENIZER_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_status.h"
#include "tm/tm_tokenizer.h"

/* ---- growable byte buffer and id vector ---------------------------------- */
typedef struct tk_buf {
    char  *p;
    size_t n;   /* bytes used */
    size_t cap; /* bytes allocated */
} tk_buf;

tm_status tm__tk_buf_reserve(tk_buf *b, size_t extra);
tm_status tm__tk_buf_put(tk_buf *b, const void *s, size_t n);
void      tm__tk_buf_free(tk_buf *b);

typedef struct tk_ids {
    int32_t *v;
    size_t   n;
    size_t   cap;
} tk_ids;

tm_status tm__tk_ids_push(tk_ids *a, int32_t id);

/* ---- string -> id hash map (open addressing, ids index tok->text) --------- */
typedef struct tk_strmap {
    int32_t  *slots; /* id or -1; power-of-two size */
    uint32_t *hash;  /* hash of the slot's string (fast reject) */
    size_t    mask;
} tk_strmap;

/* ---- merges: (left id, right id) -> rank, merged id ------------------------ */
typedef struct tk_merge {
    uint64_t key; /* (uint64)left << 32 | right; UINT64_MAX = empty */
    int32_t  rank;
    int32_t  new_id;
} tk_merge;

typedef struct tk_mergemap {
    tk_merge *slots;
    size_t    mask;
    int32_t   n;
} tk_mergemap;

tm_status tm__tk_merges_init(tk_mergemap *m, size_t n_expected);
tm_status tm__tk_merges_add(tk_mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t new_id);
const tk_merge *tm__tk_merges_find(const tk_mergemap *m, int32_t a, int32_t b);
void            tm__tk_merges_free(tk_mergemap *m);

/* ---- normalizers ----------------------------------------------------------- */
typedef enum tk_norm_kind {
    TK_NORM_NFC,
    TK_NORM_NFKC,
    TK_NORM_NFD,
    TK_NORM_NFKD,
    TK_NORM_LOWERCASE,
    TK_NORM_STRIP_ACCENTS,
    TK_NORM_BERT,
    TK_NORM_PREPEND,
    TK_NORM_REPLACE, /* literal (s1 -> s2) or regex (re -> s2) */
    TK_NORM_STRIP,
} tk_norm_kind;

typedef struct tk_norm {
    tk_norm_kind kind;
    char        *s1; /* Prepend text, Replace pattern; owned */
    size_t       n1;
    char        *s2; /* Replace content; owned */
    size_t       n2;
    pcre2_code  *re; /* Replace with a Regex pattern; owned */
    bool         clean_text, handle_chinese, strip_accents, lowercase; /* BertNormalizer */
    bool         left, right;                                          /* Strip */
} tk_norm;

/* ---- pre-tokenizers --------------------------------------------------------- */
typedef enum tk_pre_kind {
    TK_PRE_SPLIT,
    TK_PRE_BYTELEVEL,
    TK_PRE_METASPACE,
    TK_PRE_BERT,
    TK_PRE_WHITESPACE,
    TK_PRE_WHITESPACE_SPLIT,
    TK_PRE_DIGITS,
    TK_PRE_PUNCT,
} tk_pre_kind;

/* HF SplitDelimiterBehavior */
typedef enum tk_split_beh {
    TK_SPLIT_REMOVED,
    TK_SPLIT_ISOLATED,
    TK_SPLIT_MERGED_PREV,
    TK_SPLIT_MERGED_NEXT,
    TK_SPLIT_CONTIGUOUS,
} tk_split_beh;

typedef enum tk_prepend { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER } tk_prepend;

typedef struct tk_pre {
    tk_pre_kind  kind;
    pcre2_code  *re;                          /* Split, ByteLevel(use_regex), Whitespace; owned */
    tk_split_beh behavior;                    /* Split, Punctuation */
    bool         invert;                      /* Split */
    bool         add_prefix_space, use_regex; /* ByteLevel */
    char         repl[8];                     /* Metaspace replacement (UTF-8 of one char) */
    size_t       repl_len;
    tk_prepend   prepend;           /* Metaspace */
    bool         split;             /* Metaspace */
    bool         individual_digits; /* Digits */
} tk_pre;

/* ---- decoders ---------------------------------------------------------------- */
typedef enum tk_dec_kind {
    TK_DEC_BYTELEVEL,
    TK_DEC_METASPACE,
    TK_DEC_REPLACE,
    TK_DEC_BYTEFALLBACK,
    TK_DEC_FUSE,
    TK_DEC_STRIP,
    TK_DEC_WORDPIECE,
    TK_DEC_BPE, /* BPEDecoder: suffix -> " " */
} tk_dec_kind;

typedef struct tk_dec {
    tk_dec_kind kind;
    char       *s1; /* Replace pattern, Metaspace replacement, WordPiece prefix, BPE suffix */
    size_t      n1;
    char       *s2; /* Replace content, Strip content */
    size_t      n2;
    int32_t     start, stop; /* Strip */
    bool        prepend;     /* Metaspace: strip the leading space of the first token */
    bool        cleanup;     /* WordPiece */
    bool        after_fuse;  /* Strip after Fuse applies to the whole text, i.e. token 0 */
} tk_dec;

/* ---- models -------------------------------------------------------------------- */
typedef enum tk_model_kind {
    TK_MODEL_BPE,       /* rank-ordered merges (tokenizer.json BPE, GGUF gpt2) */
    TK_MODEL_SPM,       /* score-ordered merges over vocab strings (GGUF llama, llama2.c) */
    TK_MODEL_WORDPIECE, /* greedy longest match with a continuation prefix */
} tk_model_kind;

/* ---- added tokens -------------------------------------------------------------- */
typedef struct tk_added {
    int32_t id;
    char   *text; /* owned */
    size_t  len;
    bool    special, lstrip, rstrip, single_word, normalized;
} tk_added;

/* Byte trie over added-token texts, for leftmost-longest matching. */
typedef struct tk_trie_node {
    int32_t first_child; /* index into nodes or -1 */
    int32_t next_sibling;
    int32_t added; /* index into tok->added, or -1 */
    uint8_t byte;
} tk_trie_node;

/* ---- post-processor template ---------------------------------------------------- */
typedef struct tk_tmpl_item {
    bool     is_sequence; /* the input's ids */
    int32_t *ids;         /* special token ids when !is_sequence; owned */
    size_t   n_ids;
} tk_tmpl_item;

/* token attributes */
enum {
    TK_ATTR_SPECIAL =
        1, /* control: skipped by decode(skip_special); parsed only with parse_special */
    TK_ATTR_ADDED = 2, /* matched in raw text */
    TK_ATTR_BYTE = 4,  /* <0xXX> byte-fallback token */
    TK_ATTR_UNUSED = 8,
};

struct tm_tokenizer {
    tk_model_kind model;
    const char   *type_name;   /* static */
    const char   *source_name; /* static */
    char          norm_desc[128], pre_desc[128], dec_desc[128];

    /* vocabulary: n_vocab strings, carved from one blob */
    int32_t   n_vocab;
    tk_buf    blob;     /* all token texts, each NUL-terminated; offset 0 is "" (holes) */
    size_t   *text_off; /* [n_vocab] offset in blob, SIZE_MAX for holes */
    uint32_t *text_len; /* [n_vocab] bytes */
    float    *scores;   /* [n_vocab] SPM scores; NULL for other models */
    uint8_t  *attr;     /* [n_vocab] TK_ATTR_* */
    tk_strmap map;
    size_t    max_token_len; /* bytes */

    /* model parameters */
    tk_mergemap merges;
    bool        byte_fallback, ignore_merges, fuse_unk;
    int32_t     unk_id;
    char       *cont_prefix; /* BPE continuing_subword_prefix / WordPiece prefix; owned or NULL */
    size_t      cont_prefix_len;
    char       *eow_suffix; /* BPE end_of_word_suffix; owned or NULL */
    size_t      eow_suffix_len;
    int32_t     wp_max_chars;   /* WordPiece max_input_chars_per_word */
    bool        wp_word_prefix; /* GGUF BERT: words start with "▁", continuations are bare */
    int32_t     byte_ids[256];  /* id of "<0xXX>" or -1 */

    tk_norm *norm;
    int      n_norm;
    tk_pre  *pre;
    int      n_pre;
    tk_dec  *dec;
    int      n_dec;
    bool     byte_level;      /* a ByteLevel pre-tokenizer maps pieces to the GPT-2 alphabet */
    char     bl_utf8[256][2]; /* UTF-8 of each byte's GPT-2 code point (all < U+0800) */
    uint8_t  bl_len[256];

    tk_added     *added;
    int32_t       n_added;
    tk_trie_node *trie; /* node 0 is the root; its children are in trie_root */
    int32_t       n_trie, cap_trie;
    int32_t       trie_root[256]; /* root child per first byte, or -1 */

    tk_tmpl_item *tmpl; /* post-processor items for a single sequence; NULL = just the ids */
    int32_t       n_tmpl;

    int32_t bos_id, eos_id, pad_id;
    bool    add_bos, add_eos; /* descriptive (info); tmpl is what encode applies */
};

/* ---- vocabulary building (tokenizer.c) ------------------------------------------- */
/* Allocates arrays for n tokens (all "" holes); texts are set with
 * tm__tk_vocab_set, then the map is built by tm__tk_finish. */
tm_status                 tm__tk_vocab_alloc(tm_tokenizer *t, int32_t n);
tm_status                 tm__tk_vocab_set(tm_tokenizer *t, int32_t id, const char *s, size_t n);
int32_t                   tm__tk_lookup(const tm_tokenizer *t, const char *s, size_t n);
static inline const char *tm__tk_text(const tm_tokenizer *t, int32_t id) {
    return t->blob.p + t->text_off[id];
}
tm_status tm__tk_add_added(tm_tokenizer *t, const tk_added *a); /* copies a->text */
tm_status tm__tk_finish(tm_tokenizer *t); /* builds the map, trie, byte ids; checks */
tm_status tm__tk_bytelevel_regex(pcre2_code **out);
/* Sets the template to [bos] A [eos] as flags ask (ids must be valid or -1). */
tm_status tm__tk_set_tmpl_bos_eos(tm_tokenizer *t, bool add_bos, bool add_eos);
void      tm__tk_free_contents(tm_tokenizer *t);

/* ---- loaders ----------------------------------------------------------------------- */
tm_status tm__tk_load_json(tm_tokenizer *t, const char *data, size_t len, const char *name);
tm_status tm__tk_apply_hf_config(tm_tokenizer *t, const char *cfg_path);
tm_status tm__tk_load_gguf(tm_tokenizer *t, const tm_gguf *g, const char *name);
tm_status tm__tk_load_llama2c(tm_tokenizer *t, const void *data, size_t len, int32_t n_vocab,
                              const char *name);

/* ---- stages ---------------------------------------------------------------------- */
/* Normalizes in[0..n) through the steps into out (cleared first). */
tm_status tm__tk_normalize(const tm_tokenizer *t, const char *in, size_t n, tk_buf *out);

/* A piece of a pre-tokenized segment: bytes [off, off+len) of a piece arena. */
typedef struct tk_piece {
    size_t off, len;
} tk_piece;

typedef struct tk_pieces {
    tk_piece *v;
    size_t    n, cap;
    tk_buf    arena;
} tk_pieces;

void      tm__tk_pieces_free(tk_pieces *p);
tm_status tm__tk_pieces_add(tk_pieces *p, const char *s, size_t n);

/* Pre-tokenizes text (a normalized segment) into *out. first: the segment starts
 * the input (Metaspace prepend_scheme "first"). */
tm_status tm__tk_pretokenize(const tm_tokenizer *t, const char *text, size_t n, bool first,
                             tk_pieces *out, tk_pieces *scratch);

/* PCRE2 compile with UTF|UCP and JIT; message names the pattern on failure. */
tm_status tm__tk_regex_compile(const char *pat, size_t len, bool literal, pcre2_code **out);

/* Models: append ids of one piece to out. */
typedef struct tk_bpe_work tk_bpe_work; /* per-call scratch */
tm_status                  tm__tk_bpe_work_init(tk_bpe_work **w);
void                       tm__tk_bpe_work_free(tk_bpe_work *w);
tm_status tm__tk_bpe_piece(const tm_tokenizer *t, tk_bpe_work *w, const char *s, size_t n,
                           tk_ids *out);
tm_status tm__tk_spm_piece(const tm_tokenizer *t, tk_bpe_work *w, const char *s, size_t n,
                           tk_ids *out);
tm_status tm__tk_wordpiece_piece(const tm_tokenizer *t, const char *s, size_t n, tk_ids *out);

/* ---- UTF-8 and Unicode helpers (unicode.c) ----------------------------------------- */
/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid/truncated. */
size_t tm__utf8_valid_len(const uint8_t *s, size_t n);
/* Decodes the (valid) sequence at s; returns its length. */
size_t tm__utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
size_t tm__utf8_encode(uint32_t cp, char *out); /* out: 4 bytes; returns length */
/* Offset of the first invalid byte, or SIZE_MAX when s is valid UTF-8. */
size_t tm__utf8_check(const char *s, size_t n);
/* GPT-2 byte-level alphabet: byte -> code point, and back (-1 when none). */
uint32_t tm__bytelevel_cp(uint8_t b);
int      tm__bytelevel_byte(uint32_t cp);
bool     tm__uni_is_whitespace(uint32_t cp); /* Rust char::is_whitespace */
bool     tm__uni_is_punct(uint32_t cp);      /* ASCII punctuation or Unicode P* */
bool     tm__uni_is_bert_punct(uint32_t cp);
bool     tm__uni_is_control(uint32_t cp); /* BERT _is_control */
bool     tm__uni_is_cjk(uint32_t cp);
bool     tm__uni_is_mark_nonspacing(uint32_t cp);
bool     tm__uni_is_digit(uint32_t cp);      /* Rust char::is_numeric */
bool     tm__uni_is_alnum_word(uint32_t cp); /* regex \w */

#endif /* TM_TOKENIZER_INT_H */
