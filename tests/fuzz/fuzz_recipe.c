/*
 * fuzz_recipe.c - libFuzzer harness for recipe_json.c: the input is a JSON recipe
 * text, parsed and validated by tm_recipe_check() (the same code tm_model_load()
 * runs on a recipe file). Any input must give TM_OK or an error, never a crash,
 * leak or undefined behaviour. Seeds: tests/golden/recipes/*.json.
 */
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    (void)tm_recipe_check((const char *)data, size);
    return 0;
}
