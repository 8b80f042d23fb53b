/*
 * main.c - lctl, the TensorMesh command line: dispatches to one file per subcommand.
 */
#include <stdio.h>
#include <string.h>

#include "lctl.h"

static const lctl_cmd lctl_cmds[] = {
    {"inspect", "show architecture, hyperparameters, tensors and tokenizer of a model",
     lctl_inspect},
    {"tokenize", "print the token ids of a text", lctl_tokenize},
    {"detokenize", "print the text of token ids", lctl_detokenize},
    {"template", "render a conversation with a model's chat template", lctl_template},
    {"run", "generate a continuation of a prompt on the CPU (one-shot, no server)", lctl_run},
    {"chat", "chat with a model through its chat template", lctl_chat},
    {"embed", "print sentence embeddings of an embedding model (BERT, MiniLM)", lctl_embed},
    {"eval", "teacher-forced perplexity and top-1 ids over a text or token ids (CPU)", lctl_eval},
    {"bench", "measure CPU prompt and generation tokens/s (as llama-bench)", lctl_bench},
    {"quantize", "rewrite a GGUF in another quantization, or make a random-weight model",
     lctl_quantize},
    {"devices", "list the CPU and GPUs this build can use", lctl_devices},
};

static void usage(FILE *f) {
    fprintf(f, "usage: lctl <command> [options]\n\n"
               "TensorMesh command line.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof lctl_cmds / sizeof lctl_cmds[0]; i++)
        fprintf(f, "  %-12s %s\n", lctl_cmds[i].name, lctl_cmds[i].help);
    fprintf(f, "\nRun 'lctl <command> --help' for the options of a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("lctl (TensorMesh) 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof lctl_cmds / sizeof lctl_cmds[0]; i++)
        if (strcmp(argv[1], lctl_cmds[i].name) == 0)
            return lctl_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "lctl: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
