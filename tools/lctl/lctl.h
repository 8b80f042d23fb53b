/* lctl.h - subcommand table shared by the lctl mains. Each returns the exit code:
 * 0 success, 1 runtime failure (bad file...), 2 usage error. */
#ifndef LCTL_H
#define LCTL_H

typedef struct lctl_cmd {
    const char *name;
    const char *help;
    int (*fn)(int argc, char **argv); /* argv[0] is the subcommand name */
} lctl_cmd;

int lctl_inspect(int argc, char **argv);
int lctl_tokenize(int argc, char **argv);
int lctl_detokenize(int argc, char **argv);
int lctl_template(int argc, char **argv);
int lctl_run(int argc, char **argv);
int lctl_chat(int argc, char **argv);
int lctl_embed(int argc, char **argv);
int lctl_eval(int argc, char **argv);
int lctl_bench(int argc, char **argv);
int lctl_quantize(int argc, char **argv);
int lctl_devices(int argc, char **argv);

/* Reads a large model file or folder through the page cache with a progress bar on
 * stderr (only when stderr is a terminal); see progress.c. */
void lctl_model_prefetch(const char *path);

#endif
