/*
 * cmd_tokenize.c - `lctl tokenize` and `lctl detokenize`: text <-> token ids with
 * any tokenizer source tm_tokenizer_init() accepts (tokenizer.json, a Hugging
 * Face folder, a GGUF file, a llama2.c tokenizer.bin).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lctl.h"
#include "tm/tm_io.h"
#include "tm/tm_tokenizer.h"

#define MAX_INPUT_BYTES ((size_t)1 << 30)

static void tokenize_usage(FILE *f) {
    fprintf(
        f, "usage: lctl tokenize PATH [--no-special] (--text TEXT | --file FILE)\n\n"
           "Prints the token ids of a UTF-8 text on one line, separated by spaces.\n"
           "PATH is a tokenizer.json, a Hugging Face folder, a GGUF file (a vocabulary-only\n"
           "GGUF works) or a llama2.c tokenizer.bin.\n\n"
           "options:\n"
           "  --text TEXT     tokenize TEXT\n"
           "  --file FILE     tokenize the bytes of FILE exactly (a trailing newline included)\n"
           "  --no-special    add no BOS/EOS/[CLS]/[SEP] and treat special-token strings such\n"
           "                  as <|endoftext|> as plain text (HF encode(add_special_tokens=False)\n"
           "                  with encode_special_tokens=True). Default: add them as the\n"
           "                  tokenizer's post-processor says and match special tokens in the\n"
           "                  text, like HF encode(text).\n"
           "Invalid UTF-8 input is an error naming the byte offset.\n");
}

static void detokenize_usage(FILE *f) {
    fprintf(f, "usage: lctl detokenize PATH [--skip-special] (--ids \"1 2 3\" | --file FILE)\n\n"
               "Prints the text of token ids (separated by spaces, commas or newlines).\n"
               "PATH is as for 'lctl tokenize'.\n\n"
               "options:\n"
               "  --ids IDS        the ids\n"
               "  --file FILE      read the ids from FILE\n"
               "  --skip-special   leave special tokens (BOS, EOS, ...) out of the text\n"
               "  --stream         decode one id at a time through the streaming detokenizer\n"
               "                   (what 'lctl run' prints; never splits a UTF-8 character)\n");
}

static int load(const char *path, tm_tokenizer **tok) {
    tm_tokenizer_params tp = tm_tokenizer_params_default();
    tp.path = path;
    if (tm_tokenizer_init(&tp, tok) != TM_OK) {
        fprintf(stderr, "lctl: cannot load a tokenizer from %s: %s\n", path, tm_last_error());
        return 1;
    }
    return 0;
}

int lctl_tokenize(int argc, char **argv) {
    const char *path = NULL, *text = NULL, *file = NULL;
    bool        special = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            tokenize_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--no-special") == 0) {
            special = false;
        } else if (strcmp(argv[i], "--text") == 0 && i + 1 < argc) {
            text = argv[++i];
        } else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (argv[i][0] != '-' && path == NULL) {
            path = argv[i];
        } else {
            fprintf(stderr, "lctl tokenize: unexpected argument '%s'\n\n", argv[i]);
            tokenize_usage(stderr);
            return 2;
        }
    }
    if (path == NULL || (text == NULL) == (file == NULL)) {
        fprintf(stderr, "lctl tokenize: need PATH and exactly one of --text or --file\n\n");
        tokenize_usage(stderr);
        return 2;
    }
    char  *buf = NULL;
    size_t len = 0;
    if (file != NULL) {
        if (tm_file_read_all(file, MAX_INPUT_BYTES, &buf, &len) != TM_OK) {
            fprintf(stderr, "lctl tokenize: cannot read %s: %s\n", file, tm_last_error());
            return 1;
        }
    }
    tm_tokenizer *tok = NULL;
    if (load(path, &tok) != 0) {
        tm_free(buf);
        return 1;
    }
    int32_t  *ids = NULL;
    size_t    n = 0;
    tm_status st = tm_tokenizer_encode(tok, file ? buf : text, file ? len : strlen(text), special,
                                       special, &ids, &n);
    int       rc = 0;
    if (st != TM_OK) {
        fprintf(stderr, "lctl tokenize: %s%s%s\n", file ? file : "--text", file ? ": " : ": ",
                tm_last_error());
        rc = 1;
    } else {
        for (size_t i = 0; i < n; i++)
            printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    tm_free(ids);
    tm_free(buf);
    tm_tokenizer_free(tok);
    return rc;
}

static int parse_ids(const char *s, int32_t **out, size_t *n) {
    size_t   cap = 64;
    int32_t *v = malloc(cap * sizeof *v);
    *n = 0;
    if (v == NULL)
        return -1;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\n' || *s == '\t' || *s == '\r' || *s == '[' ||
               *s == ']')
            s++;
        if (!*s)
            break;
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno != 0 || x < 0 || x > INT32_MAX) {
            fprintf(stderr, "lctl detokenize: bad token id near '%.20s'\n", s);
            free(v);
            return -1;
        }
        if (*n == cap) {
            cap *= 2;
            int32_t *w = realloc(v, cap * sizeof *v);
            if (w == NULL) {
                free(v);
                return -1;
            }
            v = w;
        }
        v[(*n)++] = (int32_t)x;
        s = end;
    }
    *out = v;
    return 0;
}

int lctl_detokenize(int argc, char **argv) {
    const char *path = NULL, *ids_s = NULL, *file = NULL;
    bool        skip = false, stream = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            detokenize_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--skip-special") == 0) {
            skip = true;
        } else if (strcmp(argv[i], "--stream") == 0) {
            stream = true;
        } else if (strcmp(argv[i], "--ids") == 0 && i + 1 < argc) {
            ids_s = argv[++i];
        } else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (argv[i][0] != '-' && path == NULL) {
            path = argv[i];
        } else {
            fprintf(stderr, "lctl detokenize: unexpected argument '%s'\n\n", argv[i]);
            detokenize_usage(stderr);
            return 2;
        }
    }
    if (path == NULL || (ids_s == NULL) == (file == NULL)) {
        fprintf(stderr, "lctl detokenize: need PATH and exactly one of --ids or --file\n\n");
        detokenize_usage(stderr);
        return 2;
    }
    char  *buf = NULL;
    size_t blen = 0;
    if (file != NULL && tm_file_read_all(file, MAX_INPUT_BYTES, &buf, &blen) != TM_OK) {
        fprintf(stderr, "lctl detokenize: cannot read %s: %s\n", file, tm_last_error());
        return 1;
    }
    int32_t *ids = NULL;
    size_t   n = 0;
    if (parse_ids(file ? buf : ids_s, &ids, &n) != 0) {
        tm_free(buf);
        return 1;
    }
    tm_free(buf);
    tm_tokenizer *tok = NULL;
    if (load(path, &tok) != 0) {
        free(ids);
        return 1;
    }
    char  *text = NULL;
    size_t len = 0;
    int    rc = 0;
    if (stream) {
        tm_detokenizer *d = NULL;
        const char     *chunk;
        size_t          clen;
        tm_status       st = tm_detokenizer_init(tok, skip, &d);
        for (size_t i = 0; st == TM_OK && i < n; i++)
            if ((st = tm_detokenizer_feed(d, ids[i], &chunk, &clen)) == TM_OK)
                fwrite(chunk, 1, clen, stdout);
        if (st == TM_OK && (st = tm_detokenizer_flush(d, &chunk, &clen)) == TM_OK)
            fwrite(chunk, 1, clen, stdout);
        if (st != TM_OK) {
            fprintf(stderr, "lctl detokenize: %s\n", tm_last_error());
            rc = 1;
        } else {
            printf("\n");
        }
        tm_detokenizer_free(d);
    } else if (tm_tokenizer_decode(tok, ids, n, skip, &text, &len) != TM_OK) {
        fprintf(stderr, "lctl detokenize: %s\n", tm_last_error());
        rc = 1;
    } else {
        fwrite(text, 1, len, stdout);
        printf("\n");
    }
    tm_free(text);
    free(ids);
    tm_tokenizer_free(tok);
    return rc;
}
