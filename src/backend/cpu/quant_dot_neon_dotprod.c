/*
 * quant_dot_neon_dotprod.c - the NEON dots of quant_dot_neon.c compiled a
 * second time with the arm64 dotprod extension (sdot), as a separate unit so
 * that only CPUs reporting asimddp run its code (tm__cpu_dot_neon_dotprod).
 * Elsewhere, or with a compiler that cannot enable the extension for one unit,
 * that getter returns NULL and the plain NEON dots are used.
 */
#define TM_NEON_DOTPROD 1
#include "backend/cpu/quant_dot_neon.c"
